"""The native job API (``/api/v1``): submit, inspect, cancel and follow jobs; results survive restarts.

* ``POST /api/v1/jobs`` queues a job (``{"kind": "txt2img", "request": {...}}``); an
  ``Idempotency-Key`` header makes a retried submit return the first job instead of running twice.
* ``GET /api/v1/jobs``, ``GET /api/v1/jobs/{id}``: state, queue position, progress, ETA, error, times.
* ``GET /api/v1/jobs/{id}/result``: images as base64 PNG (read back from the saved files), infotexts,
  paths, seeds. Jobs submitted here always save their images, so nothing finished is lost.
* ``GET /api/v1/jobs/{id}/preview``: the latest preview PNG. ``DELETE /api/v1/jobs/{id}`` or
  ``POST /api/v1/jobs/{id}/cancel`` cancels that job only. ``POST /api/v1/jobs/{id}/resume`` resumes a job a
  crash interrupted (state ``interrupted``: kinds with their own checkpoints, such as training).
* ``GET /api/v1/jobs/{id}/events`` and ``GET /api/v1/events``: server-sent events (see
  :mod:`modules.api.jobs_events`).

With credentials configured each caller sees and controls only its own jobs; without, all jobs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Body, Depends, Header, Query, Response

from modules.api.errors import ApiError, error_responses
from modules.api.jobs_models import CancelResult, JobList, JobResult, JobStatus, JobSubmitted, QueueStatus
from modules.api.jobs_views import api_owner, job_result, job_status, visible_job_dependency
from modules.api.security import principal_of
from modules.jobs.model import Job, JobState

if TYPE_CHECKING:
    from modules.app_context import AppContext

PNG_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"description": "PNG image", "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}}}


def _submit(ctx: "AppContext", submission: Any, owner: str, key: str | None) -> tuple[Job, bool]:
    """Check and queue a submission of any kind offered (the registry's precheck; 4xx when refused).
    Jobs of kinds that keep their outputs save every image and resume after a restart."""
    from modules.api.sdapi_common import raise_for_submit_error
    from modules.jobs.submit import submit

    try:
        return submit(ctx, submission.request, owner=owner, source="api", idempotency_key=key, keep_outputs=True)
    except Exception as exc:  # noqa: BLE001 - mapped to 4xx or re-raised
        raise_for_submit_error(exc, ctx.kinds.of(submission.request).user_errors)
        raise


def build_jobs_router(ctx: "AppContext") -> APIRouter:
    from modules.api.jobs_events import add_event_routes

    router = APIRouter(prefix="/api/v1", tags=["Native job API"])
    visible_job = visible_job_dependency(ctx)

    def submit_job(response: Response, submission: Any = Body(...),
                   principal: str | None = Depends(principal_of),
                   idempotency_key: str | None = Header(None, alias="Idempotency-Key", max_length=200,
                                                        description="retry-safe submit: same key, same job")
                   ) -> JobSubmitted:
        key = idempotency_key.strip() if idempotency_key else None
        job, created = _submit(ctx, submission, api_owner(principal), key or None)
        if not created:
            response.status_code = 200
        return JobSubmitted(id=job.id, kind=job.kind, state=job.state, position=ctx.queue.position(job.id),
                            replayed=not created)

    # the body is one variant per kind the registry offers: a type made at run time, so it is given to
    # FastAPI as the parameter's annotation object (a string annotation would be looked up in this module)
    submit_job.__annotations__["submission"] = ctx.kinds.submission_model()
    router.post("/jobs", status_code=201, response_model=JobSubmitted,
                responses={200: {"model": JobSubmitted, "description": "replayed: the job of an earlier submit "
                                 "with the same Idempotency-Key"},
                           **error_responses(400, 404, 409, 413, 422, 429, 507)})(submit_job)

    @router.get("/jobs", response_model=JobList, responses=error_responses(422))
    def list_jobs(state: list[JobState] = Query(default_factory=list, description="repeat to allow several"),
                  limit: int = Query(50, ge=1, le=500), before: int | None = Query(None, ge=0, le=2**62),
                  principal: str | None = Depends(principal_of)) -> JobList:
        owner = principal if ctx.flags.api_auth_enabled else None
        jobs = ctx.queue.list_jobs(states=state, owner=owner, limit=limit, before_seq=before)
        next_before = jobs[-1].seq if len(jobs) == limit else None
        return JobList(jobs=[job_status(ctx, j) for j in jobs], next_before=next_before)

    @router.get("/jobs/{job_id}", response_model=JobStatus, responses=error_responses(404))
    def get_job(job: Job = Depends(visible_job)) -> JobStatus:
        return job_status(ctx, job)

    @router.get("/jobs/{job_id}/result", response_model=JobResult, responses=error_responses(404, 409, 422))
    def get_result(job: Job = Depends(visible_job),
                   images: bool = Query(True, description="false: metadata only, no base64")) -> JobResult:
        return job_result(job, images)

    @router.get("/jobs/{job_id}/preview", response_class=Response, responses={**PNG_RESPONSE, **error_responses(404)})
    def get_preview(job: Job = Depends(visible_job)) -> Response:
        png = job.control.preview_png()
        if png is None:
            raise ApiError(404, "no preview yet", "NoPreview")
        return Response(content=png, media_type="image/png")

    def cancel(job: Job, principal: str | None) -> CancelResult:
        owner = principal if ctx.flags.api_auth_enabled else None
        cancelled = ctx.queue.cancel(job.id, owner=owner)
        return CancelResult(id=job.id, state=job.state, cancelled=cancelled)

    @router.delete("/jobs/{job_id}", response_model=CancelResult, responses=error_responses(404))
    def delete_job(job: Job = Depends(visible_job), principal: str | None = Depends(principal_of)) -> CancelResult:
        return cancel(job, principal)

    @router.post("/jobs/{job_id}/cancel", response_model=CancelResult, responses=error_responses(404))
    def cancel_job(job: Job = Depends(visible_job), principal: str | None = Depends(principal_of)) -> CancelResult:
        return cancel(job, principal)

    @router.post("/jobs/{job_id}/resume", status_code=201, response_model=JobSubmitted,
                 responses=error_responses(400, 404, 409, 429, 507))
    def resume_job(job: Job = Depends(visible_job), principal: str | None = Depends(principal_of)) -> JobSubmitted:
        """Resume a job a crash interrupted (state ``interrupted``, e.g. a training session): its request is
        submitted again and the new job continues from the last checkpoint."""
        from modules.api.sdapi_common import raise_for_submit_error
        from modules.jobs.interrupted import NotResumable, resume

        try:
            new = resume(ctx, job.id, owner=api_owner(principal), source="api")
        except NotResumable as exc:
            raise ApiError(409, str(exc), "NotResumable") from None
        except Exception as exc:  # noqa: BLE001 - mapped to 4xx or re-raised
            raise_for_submit_error(exc, ctx.kinds.get(job.kind).user_errors if job.kind in ctx.kinds.names() else ())
            raise
        return JobSubmitted(id=new.id, kind=new.kind, state=new.state, position=ctx.queue.position(new.id))

    @router.get("/queue", response_model=QueueStatus)
    def queue_status(principal: str | None = Depends(principal_of)) -> QueueStatus:
        current = ctx.queue.current()
        show = current is not None and (not ctx.flags.api_auth_enabled or current.owner == principal)
        limits = ctx.queue.limits
        worker = ctx.queue.worker_status()
        return QueueStatus(running=job_status(ctx, current) if show and current else None,
                           worker_alive=worker.alive, worker_error=worker.describe(), worker_restarts=worker.restarts,
                           jobs_held_back=worker.paused, unrecorded_updates=worker.unrecorded,
                           waiting=ctx.queue.waiting_count(), waiting_yours=ctx.queue.waiting_count(api_owner(principal)),
                           max_waiting=limits.max_waiting, max_waiting_per_owner=limits.max_waiting_per_owner,
                           max_pixels=limits.max_pixels, max_images=limits.max_images)

    add_event_routes(router, ctx, visible_job)
    return router
