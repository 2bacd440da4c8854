"""Interrogate: describe an image with the default world's classifier (``atelier-shapes-vit``).

The classifier is a transformers image classifier (``AutoModelForImageClassification``) whose labels are ``group=value``
(shape, colour, background, position, size). One label is picked per group (argmax within the
group's logits) and turned into the world's canonical caption ("a large red circle in the centre
on a blue background"), or, for A1111's ``deepdanbooru`` model name, into comma-separated tags.
The model is loaded on first use and kept (it is tiny and runs on the CPU).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Sequence

if TYPE_CHECKING:
    from PIL import Image

    from modules.models.slots import ModelSlots

CLASSIFIER_NAME = "atelier-shapes-vit"
#: the model slot the loaded classifier is held in (when the interrogator is given the studio's slots)
CLASSIFIER_SLOT = "classifier"
CAPTION_MODELS = ("clip", CLASSIFIER_NAME)   # "clip" is what A1111 clients send by default
TAG_MODELS = ("deepdanbooru",)


class InterrogatorMissing(LookupError):
    """No classifier is installed (the message says where it was looked for)."""


class UnknownInterrogateModel(LookupError):
    """A model name this server does not know."""


def _groups_of(config: Any) -> dict[str, list[str]]:
    """Label groups in logit order from ``id2label`` ("group=value"; a config dict would come back key-sorted)."""
    parsed: dict[str, list[str]] = {}
    for index in sorted(config.id2label, key=int):
        group, _, value = str(config.id2label[index]).partition("=")
        parsed.setdefault(group if value else "label", []).append(value or group)
    return parsed


def caption_from_labels(labels: dict[str, str]) -> str:
    """The world's deterministic caption for one predicted scene."""
    from modules.world.captions import full_caption
    from modules.world.spec import Scene, Shape

    needed = ("shape", "colour", "background", "position", "size")
    if all(labels.get(k) for k in needed):
        shape = Shape(shape=labels["shape"], colour=labels["colour"], position=labels["position"],
                      size=labels["size"])
        return full_caption(Scene(background=labels["background"], shapes=(shape,)))
    words = " ".join(labels[k] for k in ("size", "colour", "shape") if labels.get(k)) or "shape"
    text = ("an " if words[0] in "aeiou" else "a ") + words
    if labels.get("background"):
        text += f" on a {labels['background']} background"
    return text


def tags_from_labels(labels: dict[str, str]) -> str:
    order = ("colour", "shape", "size", "position", "background")
    tags = [labels[k] + (" background" if k == "background" else "") for k in order if labels.get(k)]
    return ", ".join(tags)


class Interrogator:
    """Finds, loads (once) and runs the classifier; thread-safe.

    With ``slots`` (the studio's :class:`~modules.models.slots.ModelSlots`) the loaded classifier is held in
    the ``classifier`` slot, so it counts against the one model-memory budget (and is loaded again if it
    was evicted for room)."""

    def __init__(self, folders: Sequence[Path], slots: "ModelSlots | None" = None) -> None:
        self._folders = tuple(Path(f) for f in folders)
        self._lock = threading.Lock()
        self._slots = slots
        self._loaded: tuple[Path, Any, Any, dict[str, list[str]]] | None = None

    @property
    def folders(self) -> tuple[Path, ...]:
        return self._folders

    def find(self) -> Path | None:
        for folder in self._folders:
            if (folder / "config.json").is_file():
                return folder
        return None

    def missing(self) -> NoReturn:
        """Raise InterrogatorMissing saying where the classifier was looked for."""
        where = ", ".join(str(f) for f in self._folders)
        raise InterrogatorMissing(f"Model not found: the interrogation classifier {CLASSIFIER_NAME} is not "
                                  f"installed (looked in {where})")

    def interrogate(self, image: "Image.Image", model: str = "clip") -> str:
        name = (model or "clip").strip().lower()
        if name not in CAPTION_MODELS + TAG_MODELS:
            raise UnknownInterrogateModel(
                f"Model not found: {model!r}; this server interrogates with {', '.join(CAPTION_MODELS + TAG_MODELS)}")
        labels = self.predict(image)
        return tags_from_labels(labels) if name in TAG_MODELS else caption_from_labels(labels)

    def predict(self, image: "Image.Image") -> dict[str, str]:
        import torch

        folder = self.find()
        if folder is None:
            self.missing()
        with self._lock:
            loaded = self._slots.slot(CLASSIFIER_SLOT) if self._slots is not None else self._loaded
            if loaded is None or loaded[0] != folder:
                loaded = self._load(folder)
                if self._slots is not None:
                    self._slots.put(CLASSIFIER_SLOT, loaded)
                else:
                    self._loaded = loaded
            _, model, processor, groups = loaded
            pixels = processor(images=[image.convert("RGB")], return_tensors="pt").pixel_values
            with torch.no_grad():
                logits = model(pixel_values=pixels).logits[0]
        labels, start = {}, 0
        for group, values in groups.items():
            chunk = logits[start:start + len(values)]
            labels[group] = values[int(chunk.argmax())]
            start += len(values)
        return labels

    @staticmethod
    def _load(folder: Path) -> tuple[Path, Any, Any, dict[str, list[str]]]:
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        model = AutoModelForImageClassification.from_pretrained(folder).eval()
        processor = AutoImageProcessor.from_pretrained(folder)
        return folder, model, processor, _groups_of(model.config)
