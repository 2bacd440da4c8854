"""The gallery search job kinds.

``gallery_index`` embeds images of ``outputs/`` into the index: the ones named (a finished generation's, queued
by :mod:`.auto_index`), or the whole gallery (what is new or changed; images gone from the gallery leave the
index). It runs in its own ``index`` lane and yields to the device lane: while a generation waits or runs it
pauses at its next batch, so indexing never holds a picture up.

``gallery_search`` finds the images most like a query: an uploaded image, an image of the gallery ("Find
similar" in History: its stored vector is reused when current), or a text (CLIP-like models only). Embedding
the query is device work, so it is a job; the search itself is an exact numpy dot product over the model's
vectors (:mod:`.exact`), read once from the index and kept.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from modules.jobs.kinds import JobKind
from modules.understanding.search.embedders import SearchModelError
from modules.understanding.search.index import EmbeddingIndexError, FileStamp

if TYPE_CHECKING:
    from modules.app_context import AppContext
    from modules.jobs.model import Job
    from modules.jobs.progress import JobControl
    from modules.understanding.search.index import EmbeddingIndex

#: the lane of indexing: beside the device lane, paused while it has work
INDEX_LANE = "index"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
MAX_PATHS = 10_000


class SearchRequestError(ValueError):
    """A search or index request that cannot run as asked (the message says why)."""


def _model_field() -> Any:
    return Field(None, max_length=300, description="an image classifier of models/classifier, or clip:<folder of "
                                                    "models/CLIP> (the only kind that searches by text); empty: "
                                                    "Settings → gallery_search_model, else the offline default")


# -- the gallery's files ---------------------------------------------------------------------------------------
def index_of(ctx: "AppContext") -> "EmbeddingIndex":
    found = getattr(getattr(ctx, "understanding", None), "embeddings", None)
    if found is None:
        raise SearchRequestError("gallery search is not set up in this studio")
    return found


def _stamp(outputs: Path, path: Path) -> FileStamp | None:
    try:
        stat = path.stat()
        real = path.resolve(strict=True)
    except OSError:
        return None
    if outputs.resolve() not in real.parents:  # a symlink out of the gallery is not part of it
        return None
    return FileStamp(path.relative_to(outputs).as_posix(), stat.st_mtime_ns, stat.st_size)


def gallery_stamps(outputs: Path) -> list[FileStamp]:
    """Every image under ``outputs`` (not in hidden folders such as ``.trash``), by path."""
    stamps = []
    if outputs.is_dir():
        for root, dirs, files in os.walk(outputs):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith("."):
                    stamp = _stamp(outputs, Path(root) / name)
                    if stamp is not None:
                        stamps.append(stamp)
    return stamps


def gallery_file(ctx: "AppContext", relative: str) -> tuple[Path, FileStamp]:
    """The image ``relative`` (to ``outputs/``) and its stamp, or SearchRequestError."""
    from modules.gallery.history import HistoryError, HistoryIndex

    outputs = ctx.paths.outputs_dir
    try:
        path = HistoryIndex(outputs).resolve(relative)
    except HistoryError as exc:
        raise SearchRequestError(str(exc)) from None
    stamp = _stamp(outputs, path)
    if stamp is None or not path.name.lower().endswith(IMAGE_SUFFIXES):
        raise SearchRequestError(f"{relative!r} is not an image of the outputs folder")
    return path, stamp


def _open_rgb(path: Path) -> Any:
    from PIL import Image

    with Image.open(path) as opened:
        return opened.convert("RGB")


def _not_indexed(ctx: "AppContext", name: str) -> str:
    return (f"the gallery has no vectors of {name} yet: index it first (Understand → Search → Index the gallery, "
            f"or the gallery_index job with model {name})")


# -- gallery_index ---------------------------------------------------------------------------------------------
class GalleryIndexRequest(BaseModel):
    """Embed images of the gallery into the search index."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["gallery_index"] = "gallery_index"
    paths: list[str] = Field(default_factory=list, max_length=MAX_PATHS,
                             description="images relative to outputs/ (empty: the whole gallery: what is new or "
                                         "changed is embedded, images gone from it leave the index)")
    model: str | None = _model_field()
    batch_size: int = Field(16, ge=1, le=256, description="images embedded at once")


@dataclass
class IndexResult:
    model: str
    model_id: str
    total: int                  # images considered
    embedded: int = 0           # embedded now
    removed: int = 0            # vectors of images gone from the gallery
    failed: list[tuple[str, str]] = field(default_factory=list)   # (path, why)
    interrupted: bool = False
    seconds: float = 0.0

    def text(self) -> str:
        done = (f"{self.embedded} image(s) embedded with {self.model}, {self.total - self.embedded - len(self.failed)}"
                f" already indexed")
        if self.removed:
            done += f", {self.removed} vector(s) of deleted images removed"
        if self.failed:
            done += f"; {len(self.failed)} could not be read"
        return ("Stopped: " if self.interrupted else "Indexed: ") + done + f" ({self.seconds:.1f} s)"


def _index_precheck(ctx: "AppContext", request: GalleryIndexRequest) -> GalleryIndexRequest:
    from modules.understanding.search.embedders import chosen_model

    index_of(ctx)
    for relative in request.paths:
        gallery_file(ctx, relative)
    return request.model_copy(update={"model": chosen_model(ctx, request.model)})


def _index_run(ctx: "AppContext", job: "Job", control: "JobControl") -> IndexResult:
    from modules.understanding.search.embedders import chosen_model, model_id, open_embedder

    request: GalleryIndexRequest = job.request
    started = time.monotonic()
    index = index_of(ctx)
    name = chosen_model(ctx, request.model)
    mid = model_id(ctx, name)
    outputs = ctx.paths.outputs_dir
    if request.paths:
        stamps = [s for s in (_stamp(outputs, outputs / p) for p in dict.fromkeys(request.paths)) if s is not None]
    else:
        stamps = gallery_stamps(outputs)
    index.touch()  # from now on new images are indexed as they are saved
    result = IndexResult(model=name, model_id=mid, total=len(stamps))
    if not request.paths:
        result.removed = index.keep_only(s.path for s in stamps)
    todo = index.stale(mid, stamps)
    control.begin(1, max(1, len(todo)), text=f"indexing {len(todo)} image(s) with {name}")
    embedder = open_embedder(ctx, name) if todo else None
    for start in range(0, len(todo), request.batch_size):
        control.pause_point()
        if control.should_stop:
            result.interrupted = True
            break
        batch, pictures = [], []
        for stamp in todo[start:start + request.batch_size]:
            try:
                pictures.append(_open_rgb(outputs / stamp.path))
                batch.append(stamp)
            except (OSError, ValueError, SyntaxError) as exc:
                result.failed.append((stamp.path, str(exc)[:200] or type(exc).__name__))
        if batch:
            index.add(mid, batch, embedder.embed(pictures))  # type: ignore[union-attr]
            result.embedded += len(batch)
        control.step(min(len(todo), start + request.batch_size))
    result.seconds = time.monotonic() - started
    return result


def _index_describe(result: Any) -> dict[str, Any] | None:
    if not isinstance(result, IndexResult):
        return None
    return {"model": result.model, "model_id": result.model_id, "total": result.total, "embedded": result.embedded,
            "removed": result.removed, "failed": [{"path": p, "error": e} for p, e in result.failed],
            "interrupted": result.interrupted, "seconds": round(result.seconds, 3), "text": result.text()}


# -- gallery_search --------------------------------------------------------------------------------------------
class GallerySearchRequest(BaseModel):
    """Find the gallery's images most like an image, a gallery image, or a text."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["gallery_search"] = "gallery_search"
    image: str | None = Field(None, description="search by this image (base64 or a data URI)")
    path: str | None = Field(None, max_length=2000, description="search by this gallery image, relative to "
                                                                "outputs/ (Find similar; it is left out of the hits)")
    text: str | None = Field(None, max_length=1000, description="search by text (CLIP-like models only)")
    model: str | None = _model_field()
    top_k: int = Field(24, ge=1, le=500, description="how many images to return, best first")
    weights: dict[str, float] | None = Field(
        None, description="how much each label group counts in a match, for classifiers whose labels are "
                          "group=value (the shapes classifier: shape, colour, background, position, size), e.g. "
                          "{\"background\": 0}; groups left out keep the model's own weights (the shapes "
                          "classifier: shape and colour 1, the scene 0.25); refused for other models")


@dataclass
class SearchResult:
    model: str
    model_id: str
    query: str                  # "image", "text: ...", or the gallery path
    hits: list[Any]             # exact.Hit, best first
    searched: int               # vectors searched
    search_ms: float = 0.0      # the numpy search alone
    notes: list[str] = field(default_factory=list)
    weights: dict[str, float] | None = None   # the group weights the match used (grouped classifiers)


def _group_weights(ctx: "AppContext", name: str,
                   asked: dict[str, float] | None) -> tuple[dict[str, list[int]] | None, dict[str, float] | None]:
    """The label groups of model ``name`` and the weights a search with it uses (None, None: no groups)."""
    from modules.understanding.image_models import find_image_model, folder_groups, folder_search_weights
    from modules.understanding.label_space import resolve_weights
    from modules.understanding.search.embedders import reads_text

    if reads_text(name):
        return None, resolve_weights(None, name, {}, asked)
    folder = find_image_model(ctx, name)
    groups = folder_groups(folder)
    return groups, resolve_weights(groups, name, folder_search_weights(folder), asked)


def _query_kind(request: GallerySearchRequest) -> str:
    given = [name for name in ("image", "path", "text") if (getattr(request, name) or "").strip()]
    if len(given) != 1:
        raise SearchRequestError("give exactly one of image, path (a gallery image) or text to search by"
                                 + (f" (got {', '.join(given)})" if given else ""))
    return given[0]


def _search_precheck(ctx: "AppContext", request: GallerySearchRequest) -> GallerySearchRequest:
    from modules.understanding.search.embedders import TEXT_HELP, chosen_model, list_models, reads_text
    from modules.understanding.tasks.common import decode_images

    how = _query_kind(request)
    name = chosen_model(ctx, request.model)
    if how == "text" and not reads_text(name):
        clips = [m for m in list_models(ctx) if reads_text(m)]
        raise SearchModelError(f"{name} embeds images only; " + (f"choose {', '.join(clips)} to search by text"
                                                                 if clips else TEXT_HELP))
    if how == "path":
        gallery_file(ctx, request.path or "")
    if how == "image":
        decode_images([request.image or ""])
    _group_weights(ctx, name, request.weights)
    if not any(mid.startswith(f"{name}@") for mid in index_of(ctx).counts()):
        raise SearchRequestError(_not_indexed(ctx, name))
    return request.model_copy(update={"model": name})


def _search_run(ctx: "AppContext", job: "Job", control: "JobControl") -> SearchResult:
    from modules.understanding.search.embedders import chosen_model, model_id, open_embedder
    from modules.understanding.search.exact import search
    from modules.understanding.tasks.common import decode_images

    request: GallerySearchRequest = job.request
    how = _query_kind(request)
    name = chosen_model(ctx, request.model)
    mid = model_id(ctx, name)
    control.begin(1, 2, text=f"searching the gallery with {name}")
    index = index_of(ctx)
    matrix = index.matrix(mid)
    if not matrix.paths:
        raise SearchRequestError(_not_indexed(ctx, name) + " (the index holds vectors of other weights of it)")
    exclude, query_vector, label = None, None, "image"
    if how == "path":
        path, stamp = gallery_file(ctx, request.path or "")
        exclude, label = stamp.path, stamp.path
        query_vector = index.vector(mid, stamp)
        if query_vector is None:
            query_vector = open_embedder(ctx, name).embed([_open_rgb(path)])[0]
    elif how == "image":
        query_vector = open_embedder(ctx, name).embed(decode_images([request.image or ""]))[0]
    else:
        embedder = open_embedder(ctx, name)
        text = (request.text or "").strip()
        query_vector, label = embedder.embed_text([text])[0], f"text: {text}"  # type: ignore[attr-defined]
    groups, weights = _group_weights(ctx, name, request.weights)
    if groups and weights:
        from modules.understanding.label_space import weighted_query

        query_vector = weighted_query(query_vector, groups, weights)
    control.step(1)
    started = time.perf_counter()
    hits = search(matrix.paths, matrix.vectors, query_vector, request.top_k + 8, exclude=exclude,
                  normalise=not (groups and weights))   # a weighted query's score: the weighted mean agreement
    elapsed = (time.perf_counter() - started) * 1000
    outputs = ctx.paths.outputs_dir
    present = [hit for hit in hits if (outputs / hit.path).is_file()][:request.top_k]  # deleted since indexing
    result = SearchResult(model=name, model_id=mid, query=label, hits=present, searched=len(matrix.paths),
                          search_ms=elapsed, weights=weights)
    if len(present) < min(len(hits), request.top_k):
        result.notes.append("some indexed images were deleted since: index the gallery again to drop them")
    control.step(2)
    return result


def _search_describe(result: Any) -> dict[str, Any] | None:
    if not isinstance(result, SearchResult):
        return None
    return {"model": result.model, "model_id": result.model_id, "query": result.query,
            "hits": [hit.as_dict() for hit in result.hits], "searched": result.searched,
            "search_ms": round(result.search_ms, 3), "notes": list(result.notes), "weights": result.weights}


def _user_errors() -> tuple[type[Exception], ...]:
    from modules.understanding.image_models import ImageModelError
    from modules.understanding.search.clip_model import ClipModelError
    from modules.understanding.tasks.common import USER_ERRORS

    from modules.understanding.label_space import GroupWeightsError

    return (SearchRequestError, SearchModelError, EmbeddingIndexError, ImageModelError, ClipModelError,
            GroupWeightsError, *USER_ERRORS)


GALLERY_INDEX = JobKind(
    name="gallery_index", request=GalleryIndexRequest, run=_index_run, precheck=_index_precheck,
    describe=_index_describe, user_errors=_user_errors(), lane=INDEX_LANE, yields_to=("device",),
    summary="Embed gallery images into the search index (named ones, or the whole gallery: what is new or changed); "
            "runs beside generation and pauses while a generation waits or runs.")

GALLERY_SEARCH = JobKind(
    name="gallery_search", request=GallerySearchRequest, run=_search_run, precheck=_search_precheck,
    describe=_search_describe, user_errors=_user_errors(),
    summary="Find the gallery images most like an image, a gallery image (Find similar) or a text (CLIP-like "
            "models), by exact cosine search over the index.")

KINDS = (GALLERY_INDEX, GALLERY_SEARCH)
