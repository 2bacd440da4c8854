"""CLIP-like models (``models/CLIP/<folder>``: a transformers CLIP or SigLIP model saved with
``save_pretrained``, its tokenizer and image processor beside it): they embed images *and* text into one space,
which is what searching the gallery by text needs. Loaded offline (``local_files_only``), held in the studio's
shared model memory (slot ``search_clip``), run inside a queued job."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from modules.app_context import AppContext

CLIP_SLOT = "search_clip"
CLIP_TYPES = ("clip", "siglip", "siglip2")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


class ClipModelError(ValueError):
    """A CLIP folder that cannot be used (the message says why)."""


def clip_roots(ctx: "AppContext") -> tuple[Path, ...]:
    return tuple(dict.fromkeys([ctx.paths.data_dir / "models" / "CLIP", ctx.paths.repo_root / "models" / "CLIP"]))


def _model_type(folder: Path) -> str:
    try:
        return str(json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type", ""))
    except (OSError, ValueError, AttributeError):
        return ""


def weights_file(folder: Path) -> Path | None:
    return next((folder / n for n in WEIGHT_FILES if (folder / n).is_file()), None)


def list_clip_folders(ctx: "AppContext") -> list[Path]:
    """CLIP-like folders (first root wins on a clash), by name."""
    found: dict[str, Path] = {}
    for root in clip_roots(ctx):
        if root.is_dir():
            for folder in sorted(root.iterdir()):
                if (folder.is_dir() and not folder.name.startswith(".") and folder.name not in found
                        and _model_type(folder) in CLIP_TYPES and weights_file(folder) is not None):
                    found[folder.name] = folder
    return [found[name] for name in sorted(found, key=str.lower)]


def find_clip_folder(ctx: "AppContext", name: str) -> Path | None:
    return next((f for f in list_clip_folders(ctx) if f.name == name), None)


def clip_model_id(ctx: "AppContext", folder: Path) -> str:
    weights = weights_file(folder)
    if weights is None:
        raise ClipModelError(f"models/CLIP/{folder.name} has no weights file")
    return f"clip:{folder.name}@{ctx.hashes.sha256(weights)[:10]}"


def load_clip(ctx: "AppContext", folder: Path) -> "ClipEmbedder":
    """The CLIP model of ``folder``, from its slot when it is the one held there, else loaded and put there."""
    model_id = clip_model_id(ctx, folder)
    slots = getattr(getattr(ctx, "models", None), "slots", None)
    held = slots.slot(CLIP_SLOT) if slots is not None else None
    if isinstance(held, ClipEmbedder) and held.model_id == model_id:
        return held
    from modules.models.devices import device_choice

    try:
        loaded = load_clip_folder(folder, model_id=model_id, device=device_choice(ctx.flags)[0])
    except ClipModelError as exc:  # the library's message names files: no absolute server path in it
        raise ClipModelError(ctx.paths.scrub(str(exc))) from None
    if slots is not None:
        loaded.evicted = [n for n in slots.put(CLIP_SLOT, loaded) if n != CLIP_SLOT]
    return loaded


def load_clip_folder(folder: Path, *, model_id: str, device: str = "cpu") -> "ClipEmbedder":
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    where = f"models/CLIP/{folder.name}"
    try:
        model = AutoModel.from_pretrained(folder, local_files_only=True).to(device).eval()
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - a broken folder raises many types; the message says which file
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ClipModelError(f"{where} could not be loaded (it needs config.json, the weights, the tokenizer "
                             f"and preprocessor_config.json, as save_pretrained writes them): {text}") from None
    if not (hasattr(model, "get_image_features") and hasattr(model, "get_text_features")):
        raise ClipModelError(f"{where} is not a CLIP-like model (no image and text features)")
    return ClipEmbedder(name=folder.name, model_id=model_id, model=model, tokenizer=tokenizer, processor=processor,
                        device=device)


def _features(out: Any) -> Any:
    """A features tensor from ``get_*_features``: the tensor itself, or the output's pooled (projected) one."""
    return out if hasattr(out, "shape") else out.pooler_output


def _rows(tensor: Any) -> "np.ndarray":
    import numpy as np

    vectors = tensor.float().cpu().numpy().reshape(tensor.shape[0], -1)
    return (vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)).astype(np.float32)


@dataclass(eq=False)
class ClipEmbedder:
    """A loaded CLIP-like model: ``embed`` (images) and ``embed_text``, L2-normalised, under one lock."""

    name: str
    model_id: str
    model: Any
    tokenizer: Any
    processor: Any
    device: str = "cpu"
    evicted: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def embed(self, images: Sequence["Image.Image"], batch: int = 8) -> "np.ndarray":
        import numpy as np
        import torch

        rows = []
        with self._lock, torch.inference_mode():
            for start in range(0, len(images), max(1, batch)):
                chunk = [im.convert("RGB") for im in images[start:start + max(1, batch)]]
                pixels = self.processor(images=chunk, return_tensors="pt").pixel_values.to(self.device)
                rows.append(_rows(_features(self.model.get_image_features(pixel_values=pixels))))
        return np.concatenate(rows) if rows else np.zeros((0, 0), np.float32)

    def embed_text(self, texts: Sequence[str]) -> "np.ndarray":
        import torch

        with self._lock, torch.inference_mode():
            tokens = self.tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt")
            features = self.model.get_text_features(**{k: v.to(self.device) for k, v in tokens.items()
                                                       if k in ("input_ids", "attention_mask")})
            return _rows(_features(features))
