"""The one way a job is submitted, for the UI, both APIs, scripts and start-up alike.

``submit`` looks the request's kind up in the registry, runs that kind's precheck (so a request that
cannot run is refused at once, with the same message everywhere), queues it and, for kinds with live
previews, sets how often the sampler makes one (the ``show_progress_every_n_steps`` setting). A
retried submit with a known ``Idempotency-Key`` returns the first job without checking again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel

from modules.jobs.disk_space import is_disk_full
from modules.jobs.model import DiskFullError, Job

if TYPE_CHECKING:
    from modules.app_context import AppContext


def submit(ctx: "AppContext", request: BaseModel, *, owner: str | None = None, source: str = "internal",
           idempotency_key: str | None = None, keep_outputs: bool = False) -> tuple[Job, bool]:
    """Check and queue ``request``; returns (job, created). ``keep_outputs`` (native API): a kind that keeps
    its outputs saves every image and resumes after a restart. Raises the kind's user-facing errors, the
    queue's QueueFullError / LimitExceededError / IdempotencyConflictError, or DiskFullError."""
    kind = ctx.kinds.of(request)
    keep = keep_outputs and kind.keeps_outputs
    if keep and "save_images" in type(request).model_fields:
        request = request.model_copy(update={"save_images": True})
    replay = bool(idempotency_key) and ctx.queue.find_idempotent(owner, idempotency_key or "") is not None
    if not replay:
        request = kind.checked(ctx, request)
    try:
        job, created = ctx.queue.submit_once(request, owner=owner, source=source, idempotency_key=idempotency_key,
                                             keep_outputs=keep, resumable=True if kind.resumable else None)
    except DiskFullError:
        raise
    except Exception as exc:
        if is_disk_full(exc):  # the store could not record it: say where space is missing
            raise ctx.queue.space.explain(exc) from None
        raise
    if created and kind.previews:
        job.control.preview_every = ctx.settings.current.preview_every  # read by the sampler at each step
    return job, created


def submit_job(ctx: "AppContext", request: BaseModel, *, owner: str | None = None, source: str = "internal") -> Job:
    """:func:`submit` for callers without an idempotency key (the UI, the A1111 API, start-up)."""
    return submit(ctx, request, owner=owner, source=source)[0]
