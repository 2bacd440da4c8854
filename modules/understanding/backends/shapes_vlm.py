"""The embedded default for Ask, Chat and Check: the shapes VLM (``models/VLM/atelier-shapes-vlm``), a small
LLaVA the project trains (``modules/embedded/train_vlm.py``), run through the same local VLM backend as any user
VLM (processor, chat template, generation, streaming, multi-turn context).

It knows the shapes world's words only: a question with a word outside its vocabulary is refused with a clear
message instead of a guess. It answers yes/no questions at chance (its card), so a yes/no question naming a shape,
colour, size, position or background is answered by asking the model for each thing it names and comparing. Where the folder is missing, the tasks fall back to the shapes classifier
(:mod:`.shapes`), which also keeps making captions, tags and classifications.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

from modules.understanding.backends.base import Answer, BackendError, Message, StreamCallback
from modules.understanding.backends.shapes import SHAPES_MODEL, CannotAnswer

if TYPE_CHECKING:
    from PIL import Image

    from modules.app_context import AppContext
    from modules.understanding.backends.base import VisionBackend
    from modules.understanding.backends.local_vlm import LocalVLMBackend

SHAPES_VLM = "atelier-shapes-vlm"
#: what the default reads for a consistency check: (label, canonical question)
LABEL_QUESTIONS: tuple[tuple[str, str], ...] = (
    ("shape", "what shape is this?"), ("colour", "what colour is the shape?"),
    ("background", "what colour is the background?"), ("position", "where is the shape?"),
    ("size", "what size is the shape?"),
)


class ShapesVLMBackend:
    """:class:`~.base.VisionBackend` over the local shapes VLM, answering only in its own vocabulary."""

    def __init__(self, local: "LocalVLMBackend") -> None:
        self._local = local

    @property
    def name(self) -> str:
        return SHAPES_MODEL

    @property
    def evicted(self) -> list[str]:
        return self._local.evicted

    def unknown_words(self, text: str) -> list[str]:
        """Words of ``text`` the model's tokenizer does not know."""
        _, processor = self._local.loaded()
        tokenizer = processor.tokenizer
        pieces = tokenizer.backend_tokenizer.pre_tokenizer.pre_tokenize_str(text.lower())
        return [word for word, _ in pieces if tokenizer.convert_tokens_to_ids(word) == tokenizer.unk_token_id]

    def chat(self, messages: Sequence[Message], images: Sequence["Image.Image"] = (), *, max_tokens: int = 256,
             temperature: float = 0.0, response_format: Mapping[str, Any] | None = None,
             on_text: StreamCallback | None = None) -> Answer:
        if response_format and response_format.get("type") != "text":
            raise BackendError(f"{SHAPES_MODEL} answers in words only; structured output needs a VLM backend")
        if not any(m.images for m in messages):
            raise BackendError(f"{SHAPES_MODEL} needs an image to talk about")
        for message in messages:
            if message.role == "user":
                unknown = self.unknown_words(message.text)
                if unknown:
                    raise CannotAnswer(
                        f"the offline default only answers about the shape, colour, size, position, count and "
                        f"background in the image, in the words of the shapes world (it does not know "
                        f"{', '.join(repr(w) for w in unknown[:5])}); choose a VLM backend for other questions")
        named = yes_no_labels(messages[-1].text) if messages[-1].role == "user" else None
        if named:  # the model answers yes/no at chance (see its card): ask it what the question names, compare
            shown = next(m.images for m in reversed(messages) if m.images)
            seen = self.labels(images[shown[-1]], tuple(named))
            text = "yes" if all(seen[k] == v for k, v in named.items()) else "no"
            if on_text is not None:
                on_text(text)
            return Answer(text=text, model=SHAPES_MODEL)
        answer = self._local.chat([m for m in messages if m.role != "system"], images, max_tokens=min(max_tokens, 48),
                                  temperature=temperature, on_text=on_text)
        return Answer(text=answer.text, usage=answer.usage, model=SHAPES_MODEL, finish_reason=answer.finish_reason)

    def labels(self, image: "Image.Image", keys: Sequence[str] = ()) -> dict[str, str]:
        """Labels of the image's shape (shape, colour, background, position, size; or those in ``keys``), each
        asked of the model; what a consistency check compares."""
        return {label: self._local.chat([Message("user", question, (0,))], [image], max_tokens=4).text
                for label, question in LABEL_QUESTIONS if not keys or label in keys}


def yes_no_labels(question: str) -> dict[str, str] | None:
    """What a yes/no question ("is it a red circle?", "is the square yellow?") names, or None for other questions."""
    import re

    from modules.world.captions import parse_prompt_to_labels

    words = re.findall(r"[a-z]+", question.lower())
    if not words or words[0] not in ("is", "are", "does", "do", "was", "has") or \
            any(w in words for w in ("what", "which", "where", "how", "first", "second")):
        return None
    named = parse_prompt_to_labels(question)
    if "colour" not in named:  # "is the square green?": the colour after the shape (not "a green background")
        from modules.world.spec import SHAPE_COLOURS

        named.update({"colour": w for i, w in enumerate(words) if w in SHAPE_COLOURS
                      and (i + 1 == len(words) or words[i + 1] != "background")})
    return named or None


def shapes_vlm_present(ctx: "AppContext") -> bool:
    """Whether the shapes VLM's folder is installed (a listing: nothing is opened or imported)."""
    svc = getattr(ctx, "understanding", None)
    return svc is not None and f"local:{SHAPES_VLM}" in svc.local_models()


def installed_shapes_vlm(ctx: "AppContext") -> ShapesVLMBackend | None:
    """The shapes VLM as the studio opens it (its ``vlm`` model slot, the memory budget), or None if missing."""
    if not shapes_vlm_present(ctx):
        return None
    return ShapesVLMBackend(ctx.understanding.local(SHAPES_VLM))


def default_ready(ctx: "AppContext") -> bool:
    """Whether the offline default can answer: the shapes VLM or, failing that, the shapes classifier (answered
    from listings, so building the page imports no model library)."""
    return shapes_vlm_present(ctx) or ctx.interrogator.find() is not None


def default_backend(ctx: "AppContext") -> tuple["VisionBackend", str]:
    """The offline default for Ask and Chat, and how a result names it."""
    from modules.understanding.backends.shapes import ShapesBackend

    vlm = installed_shapes_vlm(ctx)
    if vlm is not None:
        return vlm, f"default:{SHAPES_VLM}"
    return ShapesBackend(ctx.interrogator), "default:atelier-shapes"
