"""Image models for classification and embeddings: any transformers image classifier folder in
``models/classifier/<name>/`` (the data dir's first, then the project's), loaded offline.

``AutoConfig`` / ``AutoImageProcessor`` / ``AutoModelForImageClassification`` with ``local_files_only``; no
downloaded code runs. ``google/vit-large-patch16-384`` (1000 ImageNet labels, 1024-d pooled output) works as a
folder; the embedded shapes classifier (``atelier-shapes-vit``, shipped in ``models/classifier/``) is the
offline default.

One small API:

* :func:`list_image_models` — the installed names, the default first;
* :func:`load_image_model` — an :class:`ImageModel` with ``.labels``, ``.classify(images, top_k)``,
  ``.embed(images)`` (``(n, d)`` float32, L2-normalised; a grouped classifier's in its label space), ``.model_id`` (``name@<sha256 of the weights, 10
  hex>``, stored with each vector so vectors of different models never mix).

The loaded model is held in the studio's shared model memory (the ``image_model`` slot of ``ModelSlots``), so it
counts against the one budget; callers run it inside a queued job.

Labels: a classifier whose labels are all ``group=value`` (the shapes classifier: shape, colour, background,
position, size) is *grouped*: scores are softmax within each group and its top-1 prediction is one label per
group. Any other classifier: softmax over all labels.
"""

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
    from modules.models.slots import ModelSlots

#: the offline default (the embedded shapes classifier)
DEFAULT_IMAGE_MODEL = "atelier-shapes-vit"
#: the model slot the loaded image model is held in
IMAGE_MODEL_SLOT = "image_model"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")


class ImageModelError(ValueError):
    """An image model that cannot be used; the message says why (safe to show)."""


class ImageModelMissing(ImageModelError):
    """No such model folder in models/classifier."""


@dataclass(frozen=True)
class Prediction:
    label: str
    score: float

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "score": round(float(self.score), 6)}


def classifier_roots(ctx: "AppContext") -> tuple[Path, ...]:
    """Where classifier folders are looked for: ``<data dir>/models/classifier``, then the project's."""
    return tuple(dict.fromkeys([ctx.paths.data_dir / "models" / "classifier",
                                ctx.paths.repo_root / "models" / "classifier"]))


def weights_file(folder: Path) -> Path | None:
    return next((folder / n for n in WEIGHT_FILES if (folder / n).is_file()), None)


def is_classifier_folder(folder: Path) -> bool:
    """A folder that looks like a saved transformers image classifier (config, processor, weights)."""
    return ((folder / "config.json").is_file() and any((folder / n).is_file() for n in PROCESSOR_FILES)
            and weights_file(folder) is not None)


def _valid_name(name: str) -> bool:
    return bool(name) and "/" not in name and "\\" not in name and name not in (".", "..") and not name.startswith(".")


def list_image_models(ctx: "AppContext") -> list[str]:
    """Installed classifier folder names (first root wins on a clash), the offline default first."""
    found: set[str] = set()
    for root in classifier_roots(ctx):
        if root.is_dir():
            found.update(c.name for c in root.iterdir() if c.is_dir() and _valid_name(c.name)
                         and is_classifier_folder(c))
    return sorted(found, key=lambda n: (n != DEFAULT_IMAGE_MODEL, n.lower()))


def find_image_model(ctx: "AppContext", name: str | None) -> Path:
    """The folder of ``name`` (empty: the default), or ImageModelMissing naming what is installed."""
    name = (name or DEFAULT_IMAGE_MODEL).strip()
    if _valid_name(name):
        for root in classifier_roots(ctx):
            folder = root / name
            if folder.is_dir():
                missing = [what for what, ok in (("config.json", (folder / "config.json").is_file()),
                                                 ("preprocessor_config.json",
                                                  any((folder / n).is_file() for n in PROCESSOR_FILES)),
                                                 ("model.safetensors", weights_file(folder) is not None)) if not ok]
                if missing:
                    raise ImageModelError(f"models/classifier/{name} is incomplete: {', '.join(missing)} missing "
                                          f"(save the model with save_pretrained and its image processor beside it)")
                return folder
    installed = ", ".join(list_image_models(ctx)) or "none"
    raise ImageModelMissing(f"no image classifier {name!r} in models/classifier (installed: {installed})")


def model_id_of(ctx: "AppContext", folder: Path) -> str:
    """``<name>@<first 10 hex of the weights' SHA-256>`` (cached by the studio's hash cache)."""
    weights = weights_file(folder)
    if weights is None:
        raise ImageModelError(f"models/classifier/{folder.name} has no weights file")
    return f"{folder.name}@{ctx.hashes.sha256(weights)[:10]}"


def folder_groups(folder: Path) -> dict[str, list[int]] | None:
    """The label groups of a classifier folder, from its config.json without loading it (None: not grouped)."""
    id2label = _folder_config(folder).get("id2label") or {}
    try:
        labels = [str(id2label[key]) for key in sorted(id2label, key=int)]
    except (TypeError, ValueError):
        return None
    return label_groups(labels) if labels else None


def folder_search_weights(folder: Path) -> dict[str, float]:
    """The search weights per label group a classifier declares in its config.json (``atelier_search_weights``;
    see :mod:`modules.understanding.label_space`); empty: every group counts the same."""
    declared = _folder_config(folder).get("atelier_search_weights") or {}
    if not isinstance(declared, dict):
        return {}
    return {str(k): float(v) for k, v in declared.items() if isinstance(v, (int, float))}


def _folder_config(folder: Path) -> dict[str, Any]:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def _slots(ctx: "AppContext") -> "ModelSlots | None":
    models = getattr(ctx, "models", None)
    return getattr(models, "slots", None)


def _device(ctx: "AppContext") -> str:
    from modules.models.devices import device_choice

    return device_choice(ctx.flags)[0]


def load_image_model(ctx: "AppContext", name: str | None = None) -> "ImageModel":
    """The image model ``name`` (empty: the default), from the ``image_model`` slot when it is the one held
    there (same folder, same weights), else loaded and put there (which may evict other slots)."""
    folder = find_image_model(ctx, name)
    model_id = model_id_of(ctx, folder)
    slots = _slots(ctx)
    held = slots.slot(IMAGE_MODEL_SLOT) if slots is not None else None
    if isinstance(held, ImageModel) and held.folder == folder and held.model_id == model_id:
        held.evicted = []   # already loaded: this call unloaded nothing
        return held
    loaded = load_folder(folder, model_id=model_id, device=_device(ctx))
    if slots is not None:
        loaded.evicted = [n for n in slots.put(IMAGE_MODEL_SLOT, loaded) if n != IMAGE_MODEL_SLOT]
    return loaded


def load_folder(folder: Path, *, model_id: str | None = None, device: str = "cpu") -> "ImageModel":
    """Load a classifier folder offline (no slot, no hash cache): the error says what is wrong with it."""
    folder = Path(folder)
    try:
        from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification
    except ImportError:  # pragma: no cover - transformers is a requirement
        raise ImageModelError("the transformers library is not installed") from None
    where = f"models/classifier/{folder.name}"
    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
    except (ValueError, KeyError, OSError, json.JSONDecodeError) as exc:
        raise ImageModelError(f"{where}: config.json is not a transformers model config ({_first_line(exc)})") from None
    try:
        processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    except (ValueError, KeyError, OSError, json.JSONDecodeError) as exc:
        raise ImageModelError(f"{where}: no usable image processor ({_first_line(exc)})") from None
    try:
        model = AutoModelForImageClassification.from_pretrained(folder, config=config, local_files_only=True)
    except ValueError as exc:
        text = str(exc)
        if "trust_remote_code" in text or "custom code" in text:
            raise ImageModelError(f"{where} needs its own Python code (trust_remote_code), which Atelier does not "
                                  f"run") from None
        if "Unrecognized configuration class" in text:
            raise ImageModelError(f"{where} is a {type(config).__name__}, not an image classifier "
                                  f"(AutoModelForImageClassification cannot load it)") from None
        raise ImageModelError(f"{where} could not be loaded: {_first_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - a truncated or corrupt weights file raises many types
        raise ImageModelError(f"{where}: the weights could not be read (corrupt or incomplete download?): "
                              f"{_first_line(exc)}") from None
    labels = [str(model.config.id2label.get(i, model.config.id2label.get(str(i), f"LABEL_{i}")))
              for i in range(int(model.config.num_labels))]
    return ImageModel(name=folder.name, folder=folder, model_id=model_id or folder.name,
                      model=model.to(device).eval(), processor=processor, labels=labels, device=device)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0][:300] if text else type(exc).__name__)


def label_groups(labels: Sequence[str]) -> dict[str, list[int]] | None:
    """``{group: [label indices]}`` in logit order when every label is ``group=value``, else None."""
    if not labels or not all("=" in label for label in labels):
        return None
    groups: dict[str, list[int]] = {}
    for index, label in enumerate(labels):
        groups.setdefault(label.partition("=")[0], []).append(index)
    return groups


def softmax_scores(logits: "np.ndarray", groups: dict[str, list[int]] | None) -> "np.ndarray":
    """Probabilities from logits ``(n, labels)``: over all labels, or within each group."""
    import numpy as np

    logits = np.asarray(logits, dtype=np.float64)
    out = np.empty_like(logits)
    for idx in (groups.values() if groups else [list(range(logits.shape[1]))]):
        part = logits[:, idx]
        part = np.exp(part - part.max(axis=1, keepdims=True))
        out[:, idx] = part / part.sum(axis=1, keepdims=True)
    return out


def top_predictions(logits: "np.ndarray", labels: Sequence[str], top_k: int,
                    groups: dict[str, list[int]] | None) -> list[list[Prediction]]:
    """Per image: the ``top_k`` labels with their scores (grouped: the top ``top_k`` of each group, in group order)."""
    import numpy as np

    scores = softmax_scores(logits, groups)
    out = []
    for row in scores:
        preds: list[Prediction] = []
        for idx in (groups.values() if groups else [list(range(len(labels)))]):
            order = np.asarray(idx)[np.argsort(-row[idx], kind="stable")][:max(1, top_k)]
            preds.extend(Prediction(labels[i], float(row[i])) for i in order)
        out.append(preds)
    return out


def top1_keys(logits: "np.ndarray", labels: Sequence[str], groups: dict[str, list[int]] | None) -> list[str]:
    """Each image's top-1 prediction as one string (grouped: every group's argmax), for agreement checks."""
    return [", ".join(p.label for p in preds) for preds in top_predictions(logits, labels, 1, groups)]


@dataclass(eq=False)
class ImageModel:
    """A loaded image classifier; thread-safe to call (inference under one lock)."""

    name: str
    folder: Path
    model_id: str
    model: Any
    processor: Any
    labels: list[str]
    device: str = "cpu"
    evicted: list[str] = field(default_factory=list)   # slots loading it unloaded
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)   # one inference (or export) at a time

    @property
    def groups(self) -> dict[str, list[int]] | None:
        return label_groups(self.labels)

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) the processor resizes to."""
        size = getattr(self.processor, "size", None) or {}
        if isinstance(size, dict):
            if "height" in size:
                return int(size["height"]), int(size["width"])
            if "shortest_edge" in size:
                return int(size["shortest_edge"]), int(size["shortest_edge"])
        return int(self.model.config.image_size), int(self.model.config.image_size)

    def pixels(self, images: Sequence["Image.Image"]) -> Any:
        """The processor's ``pixel_values`` (a float32 CPU tensor)."""
        return self.processor(images=[im.convert("RGB") for im in images], return_tensors="pt").pixel_values

    def logits(self, images: Sequence["Image.Image"], batch: int = 8) -> "np.ndarray":
        """Raw logits ``(n, labels)`` as float32, ``batch`` images at a time."""
        import numpy as np
        import torch

        rows = []
        with self.lock, torch.inference_mode():
            for start in range(0, len(images), max(1, batch)):
                px = self.pixels(images[start:start + max(1, batch)]).to(self.device)
                rows.append(self.model(pixel_values=px).logits.float().cpu().numpy())
        return np.concatenate(rows) if rows else np.zeros((0, len(self.labels)), np.float32)

    def classify(self, images: Sequence["Image.Image"], top_k: int = 5, batch: int = 8) -> list[list[Prediction]]:
        return top_predictions(self.logits(images, batch), self.labels, top_k, self.groups)

    def embed(self, images: Sequence["Image.Image"], batch: int = 8) -> "np.ndarray":
        """``(n, d)`` float32, each row L2-normalised. A grouped classifier embeds in its label space (per group,
        the square roots of its probabilities: :mod:`modules.understanding.label_space`), so that a search can
        weigh what it knows (the subject against the scene); any other the backbone's pooled features: its pooler
        output where it has one (ResNet, ConvNeXt, ...), else its first token after the final norm (ViT: what the
        head sees)."""
        import numpy as np
        import torch

        groups = self.groups
        if groups:
            from modules.understanding.label_space import label_space_vectors

            return label_space_vectors(softmax_scores(self.logits(images, batch), groups), groups)

        rows = []
        with self.lock, torch.inference_mode():
            for start in range(0, len(images), max(1, batch)):
                px = self.pixels(images[start:start + max(1, batch)]).to(self.device)
                out = self.model.base_model(pixel_values=px)
                pooled = getattr(out, "pooler_output", None)
                if pooled is None:
                    pooled = out.last_hidden_state[:, 0]
                rows.append(pooled.reshape(pooled.shape[0], -1).float().cpu().numpy())
        vectors = np.concatenate(rows) if rows else np.zeros((0, self.embed_dim), np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)

    @property
    def embed_dim(self) -> int:
        if self.groups:
            return len(self.labels)
        config = self.model.config
        sizes = getattr(config, "hidden_sizes", None)
        return int(sizes[-1]) if sizes else int(getattr(config, "hidden_size"))
