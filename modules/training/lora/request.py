"""The typed request of a LoRA training job (``kind: "train_lora"``)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,79}$")


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
    steps: int = Field(200, ge=1, le=100_000)
    batch_size: int = Field(1, ge=1, le=16)
    learning_rate: float = Field(1e-4, gt=0, le=1.0)
    seed: int = Field(0, ge=0, le=2**32 - 1)
    checkpoint_every: int = Field(50, ge=1, le=100_000, description="save the session every N steps")
    overwrite: bool = Field(False, description="replace an existing LoRA file of the same name")

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        value = value.strip()
        if not _NAME.match(value) or value in (".", ".."):
            raise ValueError("name: letters, digits, space, '_', '.', '-' only (at most 80), starting with a "
                             "letter or digit")
        return value
