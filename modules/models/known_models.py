"""The catalogue of known-good models per family (``known_models.json`` beside this file).

Each model names its files (a Hugging Face repo file or a URL, the folder kind it goes to, a SHA-256 when
the publisher gives one), the companion files its family needs (FLUX: VAE, CLIP-L, T5) and the settings it
is made for. Picking a file fills the Download form or builds a ``download_model`` request; nothing here
touches the network and nothing downloads by itself.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

CATALOGUE_FILE = Path(__file__).with_name("known_models.json")
FileKind = Literal["checkpoint", "lora", "vae", "embedding", "controlnet", "upscaler", "text_encoder", "vlm",
                   "classifier"]


class KnownFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: FileKind
    hf_repo: str | None = None
    hf_file: str | None = None
    url: str | None = None
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")

    @model_validator(mode="after")
    def _one_source(self) -> "KnownFile":
        if bool(self.url) == bool(self.hf_repo and self.hf_file):
            raise ValueError("a known file has either url or hf_repo + hf_file")
        return self

    @property
    def file_name(self) -> str:
        return (self.hf_file or self.url or "").rsplit("/", 1)[-1]

    def download_fields(self) -> dict[str, Any]:
        """The ``download_model`` request fields that fetch this file."""
        fields: dict[str, Any] = {"model_kind": self.kind, "sha256": self.sha256}
        if self.url:
            fields["url"] = self.url
        else:
            fields.update(hf_repo=self.hf_repo, hf_file=self.hf_file)
        return fields


class KnownModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(..., pattern=r"^[a-z0-9][a-z0-9.\-]*$")
    label: str
    family: str
    files: list[KnownFile] = Field(..., min_length=1)
    recommended: dict[str, Any] = Field(default_factory=dict)
    notes: str = ""


class KnownCatalogue(BaseModel):
    model_config = ConfigDict(extra="forbid")

    about: str = ""
    version: int = 1
    models: list[KnownModel]

    @model_validator(mode="after")
    def _unique_ids(self) -> "KnownCatalogue":
        ids = [m.id for m in self.models]
        if len(ids) != len(set(ids)):
            raise ValueError("known model ids must be unique")
        return self

    def find(self, model_id: str) -> KnownModel:
        for model in self.models:
            if model.id == model_id:
                return model
        raise LookupError(f"no known model {model_id!r}")

    def choices(self) -> list[tuple[str, str]]:
        """(label, "<model id>/<file index>") for every file, for a picker."""
        return [(f"{m.label} — {f.file_name} ({f.kind})", f"{m.id}/{i}")
                for m in self.models for i, f in enumerate(m.files)]

    def form(self, choice: str) -> dict[str, Any]:
        """What the Download form shows for a ``choices()`` value: kind, source ("URL" or "Hugging Face"),
        location, repo file, SHA-256 and a note (the recommended settings and the model's other files)."""
        model, file = self.pick(choice)
        others = [f"{f.file_name} ({f.kind})" for f in model.files if f is not file]
        settings = ", ".join(f"{k} {v}" for k, v in model.recommended.items())
        note = " ".join(part for part in (
            model.notes, f"Recommended: {settings}." if settings else "",
            f"Also needed: {', '.join(others)}." if others else "") if part)
        return {"kind": file.kind, "source": "URL" if file.url else "Hugging Face",
                "location": file.url or file.hf_repo or "", "hf_file": file.hf_file or "",
                "sha256": file.sha256 or "", "note": note}

    def pick(self, choice: str) -> tuple[KnownModel, KnownFile]:
        """The model and file of a ``choices()`` value."""
        model_id, _, index = (choice or "").rpartition("/")
        model = self.find(model_id)
        if not index.isdigit() or int(index) >= len(model.files):
            raise LookupError(f"no file {index!r} in known model {model_id!r}")
        return model, model.files[int(index)]


@lru_cache(maxsize=1)
def _load(path: str, mtime: float) -> KnownCatalogue:
    return KnownCatalogue.model_validate(json.loads(Path(path).read_text(encoding="utf-8")))


def known_catalogue(path: Path = CATALOGUE_FILE) -> KnownCatalogue:
    """The catalogue (read again when its file changes)."""
    return _load(str(path), path.stat().st_mtime)
