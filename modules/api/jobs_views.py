"""What the native job API shows of a job: its status, its result, and which jobs a caller may see.

Shared by the job routes (:mod:`modules.api.jobs_api`) and the event streams (:mod:`modules.api.jobs_events`).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from fastapi import Depends

from modules.api.errors import ApiError
from modules.api.jobs_models import JobImage, JobResult, JobStatus, timestamp
from modules.api.security import principal_of
from modules.jobs.model import Job, JobState
from modules.jobs.progress import Progress

if TYPE_CHECKING:
    from modules.app_context import AppContext

ANONYMOUS = "api-anonymous"
def api_owner(principal: str | None) -> str:
    return principal or ANONYMOUS


def job_status(ctx: "AppContext", job: Job) -> JobStatus:
    live = not job.state.finished
    snap = job.control.snapshot() if job.state is JobState.RUNNING else Progress()
    progress = 1.0 if job.state is JobState.SUCCEEDED else (snap.fraction if job.state is JobState.RUNNING else 0.0)
    return JobStatus(
        id=job.id, kind=job.kind, state=job.state, owner=job.owner, source=job.source,
        position=ctx.queue.position(job.id) if live else None, progress=round(progress, 4),
        step=snap.step, steps=snap.total_steps, batch=snap.job_no, batches=snap.job_count if snap.total_steps else 0,
        eta_seconds=snap.eta_seconds() if job.state is JobState.RUNNING else None, text=snap.text or None,
        preview_id=job.control.progress.preview_id, error=job.error,
        resume_offered=job.state is JobState.INTERRUPTED and not (job.result_meta or {}).get("resumed_as"),
        resumed_as=(job.result_meta or {}).get("resumed_as"), created=timestamp(job.created_at),
        started=timestamp(job.started_at), finished=timestamp(job.finished_at))


def _image_entry(job: Job, index: int, entry: dict[str, Any], with_images: bool) -> JobImage:
    from modules.images.codec import encode_png_base64

    path = entry.get("path")
    image, missing = None, False
    if with_images:
        if path and Path(path).is_file():
            try:
                image = base64.b64encode(Path(path).read_bytes()).decode("ascii")
            except OSError:
                image = None
        if image is None:
            pixels = getattr(job.result, "images", None) or []
            if index < len(pixels):
                image = encode_png_base64(pixels[index], entry.get("infotext") or None)
        missing = image is None
    elif path:
        missing = not Path(path).is_file()
    return JobImage(index=index, image=image, infotext=entry.get("infotext") or "", path=path,
                    seed=entry.get("seed"), subseed=entry.get("subseed"), missing=missing)


def job_result(job: Job, with_images: bool) -> JobResult:
    if not job.state.finished:
        raise ApiError(409, f"job {job.id} is {job.state.value}; its result is not ready yet", "NotReady")
    if job.state is JobState.FAILED:
        raise ApiError(409, f"job {job.id} failed: {job.error}", "JobFailed")
    meta = dict(job.result_meta or {})
    entries = meta.pop("images", [])
    images = [_image_entry(job, i, e, with_images) for i, e in enumerate(entries)]
    return JobResult(id=job.id, kind=job.kind, state=job.state, images=images, info=meta, error=job.error)


def visible_job_dependency(ctx: "AppContext") -> Callable[..., Job]:
    """A dependency resolving ``{job_id}`` to a job the caller may see (else 404)."""

    def visible_job(job_id: str, principal: str | None = Depends(principal_of)) -> Job:
        job = ctx.queue.lookup(job_id)
        if job is None or (ctx.flags.api_auth_enabled and job.owner != principal):
            raise ApiError(404, f"no job with id {job_id!r}", "JobNotFound")
        return job

    return visible_job
