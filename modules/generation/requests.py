"""Typed requests, one per job kind, shared by the UI, the REST APIs, scripts and the queue.

These models validate what can be validated without a model loaded (ranges, names);
checks against the loaded model family (size multiple, limits) happen in
:mod:`modules.generation.validation` just before the job runs.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class GenerationRequest(BaseModel):
    """Fields common to every image-generation job (A1111 names)."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field("", max_length=20000)
    negative_prompt: str = Field("", max_length=20000)
    styles: list[str] = Field(default_factory=list)
    steps: int = Field(20, ge=1, le=150)
    sampler_name: str = "Euler a"
    scheduler: str = "automatic"
    cfg_scale: float = Field(7.0, ge=0.0, le=30.0)
    width: int | None = Field(None, ge=8, le=4096, description="None: the model's native size")
    height: int | None = Field(None, ge=8, le=4096, description="None: the model's native size")
    seed: int = Field(-1, ge=-1, le=2**32 - 1)
    subseed: int = Field(-1, ge=-1, le=2**32 - 1)
    subseed_strength: float = Field(0.0, ge=0.0, le=1.0)
    seed_resize_from_w: int = Field(-1, ge=-1, le=4096)
    seed_resize_from_h: int = Field(-1, ge=-1, le=4096)
    batch_size: int = Field(1, ge=1, le=8)
    n_iter: int = Field(1, ge=1, le=64)
    clip_skip: int = Field(1, ge=1, le=12)
    checkpoint: str | None = Field(None, description="checkpoint title/name; None: the loaded one")
    save_images: bool = True

    @field_validator("sampler_name")
    @classmethod
    def _sampler_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("sampler_name must not be empty")
        return value.strip()


class Txt2ImgRequest(GenerationRequest):
    """A text-to-image job."""

    kind: Literal["txt2img"] = "txt2img"


class LoadModelRequest(BaseModel):
    """Switch the loaded checkpoint (runs on the queue like any job that touches the device)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["load_model"] = "load_model"
    checkpoint: str


JobRequest = Txt2ImgRequest | LoadModelRequest
