"""What the Search sub-tab and History's Find similar show, built from the page's fields and a job's result
(the webui layer only lays these out)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from modules.understanding.search.jobs import GalleryIndexRequest, GallerySearchRequest, SearchRequestError

if TYPE_CHECKING:
    from modules.app_context import AppContext
    from modules.understanding.search.jobs import SearchResult

DEFAULT_CHOICE = "default"


def model_choices(ctx: "AppContext") -> list[tuple[str, str]]:
    """The model dropdown: the Settings default first, then every installed model."""
    from modules.understanding.search.embedders import default_model, list_models

    return [(f"default ({default_model(ctx)})", DEFAULT_CHOICE), *((name, name) for name in list_models(ctx))]


def _model(choice: str | None) -> str | None:
    return None if choice in (None, "", DEFAULT_CHOICE) else choice


def search_request(how: str, *, image: Any = None, text: str = "", path: str = "", model: str | None = None,
                   top_k: float = 24, weights: str = "") -> GallerySearchRequest:
    """A search by ``how``: "image" (the uploaded file), "text" or "path" (a gallery image); ``weights`` as the
    page's field writes them ("background=0, size=0.5"; empty: the model's own)."""
    from modules.understanding.label_space import parse_weights
    from modules.understanding.page import file_b64

    common = {"model": _model(model), "top_k": int(top_k or 24), "weights": parse_weights(weights) or None}
    if how == "image":
        return GallerySearchRequest(image=file_b64(image), **common)
    if how == "text":
        if not (text or "").strip():
            raise SearchRequestError("type what to look for first")
        return GallerySearchRequest(text=text.strip(), **common)
    if not path:
        raise SearchRequestError("pick an image first")
    return GallerySearchRequest(path=path, **common)


def index_request(model: str | None) -> GalleryIndexRequest:
    return GalleryIndexRequest(model=_model(model))


def hit_items(ctx: "AppContext", result: "SearchResult") -> list[tuple[Path, str, str]]:
    """(thumbnail file, caption "score · file name", the gallery path) per hit that can still be shown."""
    from modules.gallery.thumbnails import thumbnail

    items = []
    for hit in result.hits:
        try:
            items.append((thumbnail(ctx.paths.outputs_dir / hit.path, ctx.paths.cache_dir),
                          f"{hit.score:.3f} · {Path(hit.path).name}", hit.path))
        except OSError:
            continue
    return items


def result_note(result: "SearchResult") -> str:
    text = (f"{len(result.hits)} image(s) like {result.query} among {result.searched} indexed with {result.model} "
            f"(search {result.search_ms:.1f} ms)")
    if result.weights:
        from modules.understanding.label_space import format_weights

        text += f"; weights {format_weights(result.weights)}"
    return "; ".join([text, *result.notes])


def index_summary(ctx: "AppContext") -> str:
    """What the index holds, per model id (or that the gallery is not indexed yet)."""
    from modules.understanding.search.jobs import index_of

    counts = index_of(ctx).counts()
    if not counts:
        return "The gallery is not indexed yet: Index the gallery (new images are then added as they are saved)."
    return "Indexed: " + ", ".join(f"{n} image(s) with {mid}" for mid, n in sorted(counts.items()))
