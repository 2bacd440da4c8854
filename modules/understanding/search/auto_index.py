"""New images join the search index as they are saved: when a job that saved images finishes (its described
result lists ``images`` with their ``path``), a ``gallery_index`` job for those files is queued. The save never
waits: this listener only queues, from the job's ``finished`` event, and the index job runs in its own lane,
paused while generation has work.

It acts once the gallery has been indexed (the index file exists: Understand → Search → Index the gallery, or a
``gallery_index`` job) and while Settings → ``gallery_index_on_save`` is on.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modules.app_context import AppContext
    from modules.jobs.events import JobEvent

log = logging.getLogger(__name__)

#: the ``source`` of the indexing jobs queued here
AUTO_SOURCE = "auto-index"
#: kinds whose results are not new gallery images
SKIPPED_KINDS = ("gallery_index", "gallery_search")


def saved_paths(ctx: "AppContext", meta: dict[str, Any] | None) -> list[str]:
    """The images a finished job saved under ``outputs/`` (relative paths), from its described result."""
    outputs = ctx.paths.outputs_dir.resolve()
    found = []
    for item in (meta or {}).get("images") or []:
        path = item.get("path") if isinstance(item, dict) else None
        if not path:
            continue
        try:
            found.append(Path(path).resolve().relative_to(outputs).as_posix())
        except (OSError, ValueError):  # saved elsewhere (not part of the gallery)
            continue
    return found


def index_saved(ctx: "AppContext", event: "JobEvent") -> None:
    """The event listener: queue the indexing of a finished job's saved images (never raises)."""
    if event.type != "finished":
        return
    try:
        job = ctx.queue.get(event.job_id)
        if job is None or job.kind in SKIPPED_KINDS:
            return
        understanding = getattr(ctx, "understanding", None)
        if understanding is None or not understanding.embeddings.exists():
            return
        if not ctx.settings.current.gallery_index_on_save:
            return
        paths = saved_paths(ctx, job.result_meta)
        if not paths:
            return
        from modules.jobs.submit import submit_job
        from modules.understanding.search.jobs import GalleryIndexRequest

        submit_job(ctx, GalleryIndexRequest(paths=_merged_with_waiting(ctx, paths)), owner=None, source=AUTO_SOURCE)
    except Exception as exc:  # noqa: BLE001 - indexing is a convenience: a full queue or a missing model skips it
        log.info("new images of job %s were not queued for the search index: %s", event.job_id, exc)


def _merged_with_waiting(ctx: "AppContext", paths: list[str]) -> list[str]:
    """``paths`` plus those of an indexing job queued here earlier that has not started (it is cancelled), so
    at most one waits however many images are saved while generation keeps the index lane paused; past
    :data:`~.jobs.MAX_PATHS` images, the whole gallery (an empty list) instead."""
    from modules.jobs.model import JobState
    from modules.understanding.search.jobs import MAX_PATHS

    merged: list[str] | None = list(paths)
    for waiting in ctx.queue.jobs():
        if waiting.kind != "gallery_index" or waiting.source != AUTO_SOURCE or waiting.state is not JobState.QUEUED:
            continue
        earlier = list(getattr(waiting.request, "paths", None) or [])
        if ctx.queue.cancel(waiting.id):
            merged = None if merged is None or not earlier else [*earlier, *merged]
    if merged is None:
        return []
    merged = list(dict.fromkeys(merged))
    return merged if len(merged) <= MAX_PATHS else []


def start_auto_index(ctx: "AppContext") -> int:
    """Listen for finished jobs; returns the subscription token."""
    return ctx.events.subscribe(lambda event: index_saved(ctx, event), everyone=True)
