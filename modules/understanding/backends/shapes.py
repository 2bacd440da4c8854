"""The embedded offline default: the shapes-world classifier (``atelier-shapes-vit``) behind the backend
interface. It predicts one label per group (shape, colour, background, position, size) and answers from them:
captions at each detail level, tags, and questions about those five things (plus yes/no questions naming
them). Anything else it says it cannot answer, and names the backends that can."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from modules.understanding.backends.base import Answer, BackendError, Message, StreamCallback, Usage
from modules.understanding.interrogate import caption_from_labels

if TYPE_CHECKING:
    from PIL import Image

    from modules.understanding.interrogate import Interrogator

SHAPES_MODEL = "atelier-shapes"
_WORD = re.compile(r"[a-z]+")
_FOLLOW_UP = re.compile(r"^(and|what about|how about|same for|now)\b|^(this|that|the other) one\b")


class CannotAnswer(BackendError):
    """A question outside what the offline default knows."""


def short_caption(labels: Mapping[str, str]) -> str:
    words = " ".join(labels[k] for k in ("colour", "shape") if labels.get(k)) or "shape"
    return ("an " if words[0] in "aeiou" else "a ") + words


def label_tags(labels: Mapping[str, str]) -> list[str]:
    tags = []
    if labels.get("colour") and labels.get("shape"):
        tags.append(f"{labels['colour']} {labels['shape']}")
    for key in ("shape", "colour", "size", "position"):
        if labels.get(key):
            tags.append(labels[key] if key != "size" else f"{labels[key]} shape")
    if labels.get("background"):
        tags.append(f"{labels['background']} background")
    tags.append("simple background")
    return list(dict.fromkeys(tags))


def answer_question(labels: Mapping[str, str], question: str) -> str:
    """An answer from the predicted labels, or CannotAnswer."""
    from modules.world.captions import parse_prompt_to_labels

    text = question.lower()
    words = _WORD.findall(text)
    if not words:
        raise CannotAnswer("the question is empty")
    if any(w in words for w in ("describe", "caption")) or re.search(r"what (is|does) (in )?(this|the) (image|picture)",
                                                                      text):
        return caption_from_labels(dict(labels))
    if words[0] in ("is", "are", "does", "do", "was", "has") and not any(w in words for w in ("what", "which", "where")):
        named = parse_prompt_to_labels(question)
        if not named:
            raise CannotAnswer("the offline default answers yes/no questions that name a shape, colour, size, "
                               "position or background of the shapes world")
        return "yes" if all(labels.get(k) == v for k, v in named.items()) else "no"
    if "how many" in text:
        return "1" if labels.get("shape") else "0"
    if "background" in words:
        return labels.get("background", "") or _cannot()
    if any(w in words for w in ("colour", "color")):
        return labels.get("colour", "") or _cannot()
    if "where" in words or "position" in words:
        return labels.get("position", "") or _cannot()
    if "size" in words or ("how" in words and any(w in words for w in ("big", "large", "small"))) or \
            re.search(r"\b(big|large) or small\b|\bsmall or (big|large)\b", text):
        return labels.get("size", "") or _cannot()
    if "shape" in words or re.search(r"what (is|kind of|sort of)", text):
        return labels.get("shape", "") or _cannot()
    return _cannot()


def _cannot() -> str:
    raise CannotAnswer("the offline default only answers about the shape, colour, size, position and background "
                       "in the image (choose a VLM backend for other questions)")


class ShapesBackend:
    """:class:`~.base.VisionBackend` over the interrogation classifier (the last user message and its last image)."""

    def __init__(self, interrogator: "Interrogator") -> None:
        self._interrogator = interrogator

    @property
    def name(self) -> str:
        return SHAPES_MODEL

    def labels(self, image: "Image.Image") -> dict[str, str]:
        from modules.understanding.interrogate import InterrogatorMissing

        try:
            return self._interrogator.predict(image)
        except InterrogatorMissing as exc:
            raise BackendError(str(exc)) from None

    def chat(self, messages: Sequence[Message], images: Sequence["Image.Image"] = (), *, max_tokens: int = 256,
             temperature: float = 0.0, response_format: Mapping[str, Any] | None = None,
             on_text: StreamCallback | None = None) -> Answer:
        if response_format and response_format.get("type") != "text":
            raise BackendError(f"{SHAPES_MODEL} answers in words only; structured output needs a VLM backend")
        user = next((m for m in reversed(messages) if m.role == "user"), None)
        if user is None:
            raise BackendError("the conversation has no user message")
        shown = user.images or next((m.images for m in reversed(messages) if m.images), ())
        if not shown:
            raise BackendError(f"{SHAPES_MODEL} needs an image to talk about")
        index = shown[-1]
        if not 0 <= index < len(images):
            raise BackendError(f"message refers to image {index + 1}, but the conversation has {len(images)}")
        labels = self.labels(images[index])
        try:
            text = answer_question(labels, user.text or "describe")
        except CannotAnswer:
            earlier = [m for m in messages if m.role == "user" and m is not user]
            if not earlier or not _FOLLOW_UP.match(user.text.strip().lower()):
                raise
            text = answer_question(labels, earlier[-1].text)  # "and this one?": the last question, asked again
        if on_text is not None:
            on_text(text)
        return Answer(text=text, usage=Usage(0, 0), model=SHAPES_MODEL)
