"""Which models embed the gallery, by name: an image classifier folder of ``models/classifier`` (through
:mod:`modules.understanding.image_models`; the embedded shapes classifier is the offline default), or
``clip:<folder>``, a CLIP-like model of ``models/CLIP`` (:mod:`.clip_model`), the only kind that also embeds
text. An empty name means Settings → ``gallery_search_model``, else the offline default.

What the index and the search need of a model is small (:class:`Embedder`): ``model_id`` (stored with each
vector) and ``embed(images)`` → ``(n, d)`` float32, L2-normalised; text search also needs ``embed_text``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from modules.app_context import AppContext

CLIP_PREFIX = "clip:"
TEXT_HELP = ("searching by text needs a CLIP-like model: save one with save_pretrained (for example "
             "openai/clip-vit-base-patch32, with its tokenizer and image processor) into models/CLIP/<name>, then "
             "index the gallery with model clip:<name>")


class SearchModelError(ValueError):
    """A search model that is not installed or cannot do what is asked (the message says why)."""


@runtime_checkable
class Embedder(Protocol):
    model_id: str

    def embed(self, images: Sequence["Image.Image"]) -> "np.ndarray": ...


@runtime_checkable
class TextEmbedder(Embedder, Protocol):
    def embed_text(self, texts: Sequence[str]) -> "np.ndarray": ...


def default_model(ctx: "AppContext") -> str:
    from modules.understanding.image_models import DEFAULT_IMAGE_MODEL

    return (getattr(ctx.settings.current, "gallery_search_model", "") or "").strip() or DEFAULT_IMAGE_MODEL


def list_models(ctx: "AppContext") -> list[str]:
    """Every installed model that can embed the gallery (classifiers, then ``clip:<folder>``)."""
    from modules.understanding.image_models import list_image_models
    from modules.understanding.search.clip_model import list_clip_folders

    return [*list_image_models(ctx), *(CLIP_PREFIX + f.name for f in list_clip_folders(ctx))]


def reads_text(name: str) -> bool:
    return name.startswith(CLIP_PREFIX)


def chosen_model(ctx: "AppContext", name: str | None) -> str:
    """``name`` (empty: the default) if it is installed, else SearchModelError naming what is."""
    from modules.understanding.image_models import ImageModelError, find_image_model
    from modules.understanding.search.clip_model import find_clip_folder

    name = (name or "").strip() or default_model(ctx)
    if reads_text(name):
        if find_clip_folder(ctx, name[len(CLIP_PREFIX):]) is not None:
            return name
    else:
        try:
            find_image_model(ctx, name)
            return name
        except ImageModelError as exc:
            if "incomplete" in str(exc):
                raise SearchModelError(str(exc)) from None
    raise SearchModelError(f"no search model {name!r}: use an image classifier of models/classifier or "
                           f"clip:<folder of models/CLIP> (installed: {', '.join(list_models(ctx)) or 'none'})")


def model_id(ctx: "AppContext", name: str) -> str:
    """The id stored with each vector of ``name`` (its name and a hash of its weights), without loading it."""
    from modules.understanding.image_models import find_image_model, model_id_of
    from modules.understanding.search.clip_model import clip_model_id, find_clip_folder

    if reads_text(name):
        folder = find_clip_folder(ctx, name[len(CLIP_PREFIX):])
        if folder is None:
            raise SearchModelError(f"no CLIP model {name[len(CLIP_PREFIX):]!r} in models/CLIP")
        return clip_model_id(ctx, folder)
    return model_id_of(ctx, find_image_model(ctx, name))


def open_embedder(ctx: "AppContext", name: str) -> Embedder:
    """The loaded model ``name`` (inside a job: loading is device work)."""
    from modules.understanding.image_models import ImageModelError, load_image_model
    from modules.understanding.search.clip_model import ClipModelError, find_clip_folder, load_clip

    if reads_text(name):
        folder = find_clip_folder(ctx, name[len(CLIP_PREFIX):])
        if folder is None:
            raise SearchModelError(f"no CLIP model {name[len(CLIP_PREFIX):]!r} in models/CLIP")
        try:
            return load_clip(ctx, folder)
        except ClipModelError as exc:
            raise SearchModelError(str(exc)) from None
    try:
        return load_image_model(ctx, name)
    except ImageModelError as exc:
        raise SearchModelError(str(exc)) from None
