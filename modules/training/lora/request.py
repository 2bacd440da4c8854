"""The typed request of a LoRA training job (``kind: "train_lora"``)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,79}$")
#: the ``devices`` values (modules.training.distributed.plan reads them)
DEVICES_PATTERN = r"^(single|all|(gpu|cpu):([1-9][0-9]?))$"


def safe_output_name(value: str) -> str:
    """A training job's output name (its session folder and file name): stripped, and only characters that are safe
    in a file name."""
    value = value.strip()
    if not _NAME.match(value) or value in (".", ".."):
        raise ValueError("name: letters, digits, space, '_', '.', '-' only (at most 80), starting with a "
                         "letter or digit")
    return value


def clean_sample_prompts(value: list[str]) -> list[str]:
    """A training request's sample prompts: blank ones dropped, each stripped and at most 500 characters."""
    cleaned = [p.strip() for p in value if p and p.strip()]
    if any(len(p) > 500 for p in cleaned):
        raise ValueError("sample_prompts: each prompt at most 500 characters")
    return cleaned


class TrainLoraRequest(BaseModel):
    """Teach a checkpoint's UNet a subject or style from a folder of images, as a LoRA."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["train_lora"] = "train_lora"
    name: str = Field(..., description="the LoRA's file name (models/Lora/<name>.safetensors) and session name")
    checkpoint: str | None = Field(None, description="base checkpoint title/name; None: the loaded one")
    dataset: str = Field(..., description="a folder of images (under the data dir or an --allowed-dir root); a "
                                          "<image>.txt beside an image is its caption")
    instance_prompt: str = Field("a sks shape", min_length=1, max_length=500,
                                 description="the caption of images without a .txt file (a rare token + class)")
    resolution: int | None = Field(None, ge=64, le=2048, description="training size (square); None: the model's")
    rank: int = Field(4, ge=1, le=128, description="LoRA rank (network dim)")
    alpha: float = Field(4.0, gt=0, le=1024, description="LoRA alpha (scale = alpha / rank)")
    train_text_encoder: bool = Field(False, description="false: the UNet only; true: the UNet and the text "
                                                        "encoder(s) (exported as lora_te_* / lora_te1_*, lora_te2_*)")
    text_encoder_lr: float | None = Field(None, gt=0, le=1.0, description="the text encoders' learning rate with "
                                                                          "train_text_encoder; None: learning_rate")
    steps: int = Field(200, ge=1, le=100_000)
    batch_size: int = Field(1, ge=1, le=16)
    learning_rate: float = Field(1e-4, gt=0, le=1.0)
    seed: int = Field(0, ge=0, le=2**32 - 1)
    checkpoint_every: int = Field(50, ge=1, le=100_000, description="save the session every N steps")
    overwrite: bool = Field(False, description="replace an existing LoRA file of the same name")
    sample_every: int = Field(0, ge=0, le=100_000, description="render the sample prompts every N steps (0: never) "
                                                               "into the session's samples/ folder")
    sample_prompts: list[str] = Field(default_factory=list, max_length=8,
                                      description="prompts of the sample images (fixed seeds: seed, seed+1, ...); "
                                                  "empty: the instance prompt")
    sample_steps: int = Field(20, ge=1, le=150, description="sampling steps of each sample image")
    devices: str = Field("single", pattern=DEVICES_PATTERN,
                         description="single: one device, in the studio's process (the default); all: one worker "
                                     "process per CUDA GPU (NCCL); gpu:N: the first N GPUs; cpu:N: N CPU processes "
                                     "(gloo). Data parallel: each worker trains batch_size images a step, gradients "
                                     "averaged; a session keeps its devices")

    @field_validator("sample_prompts")
    @classmethod
    def _prompts(cls, value: list[str]) -> list[str]:
        return clean_sample_prompts(value)

    @model_validator(mode="after")
    def _text_encoder_lr_needs_training(self) -> "TrainLoraRequest":
        if self.text_encoder_lr is not None and not self.train_text_encoder:
            raise ValueError("text_encoder_lr is only used with train_text_encoder: set it, or leave text_encoder_lr out")
        return self

    def samples(self) -> list[str]:
        """The prompts rendered every ``sample_every`` steps."""
        return self.sample_prompts or [self.instance_prompt]

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        return safe_output_name(value)
