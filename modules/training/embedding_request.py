"""The typed request of a textual-inversion job (``kind: "train_embedding"``)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")


class TrainEmbeddingRequest(BaseModel):
    """Teach a new word (an embedding) a subject or style from a folder of images; only its vectors train."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["train_embedding"] = "train_embedding"
    name: str = Field(..., description="the embedding's file name (models/embeddings/<name>.safetensors), the word "
                                       "written in prompts, and the session name")
    checkpoint: str | None = Field(None, description="base checkpoint title/name; None: the loaded one")
    dataset: str | None = Field(None, description="a folder of images (under the data dir or an --allowed-dir root);"
                                                  " a <image>.txt beside an image is its {filewords}; needed when "
                                                  "steps > 0")
    initial: Literal["init_text", "file"] = Field(
        "init_text", description="start from the init text's token vectors, or from the existing "
                                 "models/embeddings/<name> file (A1111: train an embedding made by create)")
    init_text: str = Field("*", max_length=500, description="its token vectors start the new vectors (cycled)")
    num_vectors_per_token: int | None = Field(None, ge=1, le=75, description="vectors of the new word (None: 1, or "
                                                                             "the file's count)")
    caption_template: str = Field("a photo of {token}", min_length=1, max_length=500,
                                  description="the caption of each image: {token} is the new word, {filewords} the "
                                              "image's .txt caption")
    resolution: int | None = Field(None, ge=64, le=2048, description="training size (square); None: the model's")
    steps: int = Field(300, ge=0, le=100_000, description="0: only create the embedding from its initial vectors")
    batch_size: int = Field(1, ge=1, le=16)
    learning_rate: float = Field(5e-3, gt=0, le=10.0)
    max_grad_norm: float | None = Field(None, gt=0, description="clip the gradient's norm (None: no clipping)")
    seed: int = Field(0, ge=0, le=2**32 - 1)
    checkpoint_every: int = Field(50, ge=1, le=100_000, description="save the session every N steps")
    overwrite: bool = Field(False, description="replace an existing embedding file of the same name")

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        value = value.strip()
        if not _NAME.match(value) or value in (".", ".."):
            raise ValueError("name: letters, digits, '_', '.', '-' only (one word, at most 80), starting with a "
                             "letter or digit")
        return value

    @model_validator(mode="after")
    def _needs_data(self) -> "TrainEmbeddingRequest":
        if self.steps > 0 and not (self.dataset or "").strip():
            raise ValueError("dataset: a folder of images is needed to train (steps > 0)")
        if "{token}" not in self.caption_template:
            raise ValueError("caption_template: must contain {token} (where the new word goes)")
        return self

    def vector_count(self) -> int:
        return self.num_vectors_per_token or 1
