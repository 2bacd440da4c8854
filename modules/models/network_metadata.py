"""What a user writes about a model file, kept beside it as A1111 keeps it, and what the file says about itself.

**User metadata** lives in ``<name>.json`` next to the model (``models/Lora/sub/Detail.json`` for
``Detail.safetensors``), with A1111's keys: ``"description"``, ``"activation text"``, ``"negative text"``,
``"preferred weight"``, ``"notes"``, ``"sd version"``. Keys the studio does not edit (an extension's) are
kept as they were when the file is saved again. Writes are atomic (a temp file, then ``os.replace``).

**Training metadata** is the ``__metadata__`` block of a safetensors header (kohya's ``ss_*`` keys and the
like), read without loading a tensor; shown read-only.
"""

from __future__ import annotations

import json
import math
import os
import threading
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: the ``"sd version"`` values A1111 writes (its ``SdVersion`` names), plus the families the studio knows
SD_VERSIONS = ("Unknown", "SD1", "SD2", "SDXL", "SD3", "Flux")
#: longest text a field may hold (characters): a description, not a book
MAX_TEXT = 20_000
#: largest user metadata file read (bytes)
MAX_FILE = 1_000_000
WEIGHT_RANGE = (-10.0, 10.0)
#: how many header metadata entries are shown, and how long each value may be
MAX_SHOWN_KEYS = 200
MAX_SHOWN_VALUE = 2_000


class MetadataError(ValueError):
    """User metadata that cannot be read or saved (the message is for the user)."""


class UserMetadata(BaseModel):
    """The fields of ``<name>.json`` the studio edits (A1111's keys as aliases)."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    description: str = Field("", max_length=MAX_TEXT)
    activation_text: str = Field("", alias="activation text", max_length=MAX_TEXT)
    negative_text: str = Field("", alias="negative text", max_length=MAX_TEXT,
                               description="a LoRA's: added to the negative prompt with its tag")
    preferred_weight: float = Field(0.0, alias="preferred weight", ge=WEIGHT_RANGE[0], le=WEIGHT_RANGE[1],
                                    description="0: the default weight")
    notes: str = Field("", max_length=MAX_TEXT)
    sd_version: str = Field("Unknown", alias="sd version")

    @field_validator("preferred_weight")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("preferred weight must be a number")
        return value

    @field_validator("sd_version")
    @classmethod
    def _known_version(cls, value: str) -> str:
        if value not in SD_VERSIONS:
            raise ValueError(f"sd version must be one of {', '.join(SD_VERSIONS)}")
        return value

    def as_file(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True)


def metadata_path(model: Path) -> Path:
    """``<folder>/<name>.json`` for a model file (or a diffusers folder)."""
    return model.parent / f"{model.name if model.is_dir() else model.stem}.json"


def _read_raw(path: Path) -> dict[str, Any]:
    """The JSON object in ``path`` ({} when there is none); MetadataError when it is unreadable."""
    try:
        if path.stat().st_size > MAX_FILE:
            raise MetadataError(f"{path.name} is larger than {MAX_FILE // 1000} KB: not a metadata file")
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MetadataError(f"{path.name} is not readable JSON ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise MetadataError(f"{path.name} does not hold a JSON object")
    return data


def _lenient(raw: dict[str, Any]) -> UserMetadata:
    """The known fields of a file, each kept when valid (a hand-edited file with one odd value keeps the rest)."""
    known: dict[str, Any] = {}
    for name, field in UserMetadata.model_fields.items():
        key = field.alias or name
        if key not in raw:
            continue
        value = raw[key]
        if name == "preferred_weight" and isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                continue
        try:
            UserMetadata.model_validate({key: value})
        except ValueError:
            continue
        known[key] = value
    return UserMetadata.model_validate(known)


def read_user_metadata(model: Path) -> tuple[UserMetadata, str]:
    """(the metadata, "" or a note on why the file could not be used) for a model."""
    try:
        return _lenient(_read_raw(metadata_path(model))), ""
    except MetadataError as exc:
        return UserMetadata(), str(exc)


class MetadataWriter:
    """Saves user metadata atomically; one save at a time per writer (owned by its caller)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def save(self, model: Path, metadata: UserMetadata) -> Path:
        """Write ``metadata`` into the model's ``<name>.json``, keeping keys the studio does not edit."""
        path = metadata_path(model)
        with self._lock:
            try:
                raw = _read_raw(path)
            except MetadataError:
                raw = {}  # an unreadable file is replaced by what the user saves now
            raw.update(metadata.as_file())
            tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
            try:
                tmp.write_text(json.dumps(raw, indent=4, ensure_ascii=False) + "\n", encoding="utf-8")
                os.replace(tmp, path)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                raise MetadataError(f"cannot write {path.name}: {exc.strerror or exc}") from None
        return path


def training_metadata(model: Path) -> dict[str, str]:
    """The safetensors header's ``__metadata__`` (kohya ``ss_*`` keys first), values shortened for showing;
    {} for other formats or an unreadable header. Reads the header only."""
    if not model.is_file() or model.suffix.lower() != ".safetensors":
        return {}
    from modules.models.errors import ModelLoadError
    from modules.models.header import read_safetensors_header

    try:
        metadata = read_safetensors_header(model).metadata
    except ModelLoadError:
        return {}
    ordered = sorted(metadata.items(), key=lambda kv: (not kv[0].startswith("ss_"), kv[0]))
    return {key: (value if len(value) <= MAX_SHOWN_VALUE else value[:MAX_SHOWN_VALUE] + "…")
            for key, value in ordered[:MAX_SHOWN_KEYS]}


def guess_sd_version(training: dict[str, str]) -> str:
    """A1111's ``sd version`` guessed from kohya's ``ss_base_model_version`` / ``ss_sd_model_name``."""
    base = (training.get("ss_base_model_version") or "").lower()
    if base.startswith("sdxl"):
        return "SDXL"
    if base.startswith("sd_v2") or training.get("ss_v2") == "True":
        return "SD2"
    if base.startswith("flux"):
        return "Flux"
    if base.startswith("sd_v1") or (not base and training.get("ss_sd_model_name")):
        return "SD1"
    return "Unknown"
