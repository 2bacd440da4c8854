"""The A1111-compatible ``/sdapi/v1`` routes, with A1111's exact response shapes.

Every route answers JSON (``null`` where A1111 answers nothing) because clients such as
``webuiapi`` call ``.json()`` on every response. Generation goes through the job queue, owned by
the caller (an API key, a basic-auth user, or "sdapi-anonymous"), and is recorded in the job
store like any other job; images are saved only when ``save_images`` is true (A1111 semantics).

This module holds the generation routes (txt2img, img2img, progress, interrupt, skip) and
assembles the others: :mod:`modules.api.sdapi_listings` (listings, options, system) and
:mod:`modules.api.sdapi_images` (png-info, interrogate, extras).
"""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any, Sequence

from fastapi import APIRouter, BackgroundTasks, Body, Depends

from modules.api.errors import ApiError, error_responses
from modules.api.sdapi_models import (NULL_RESPONSE, ProgressResponse, ProgressState, SdTxt2ImgPayload,
                                      TextToImageResponse)
from modules.api.security import principal_of
from modules.jobs.model import (DiskFullError, IdempotencyConflictError, Job, JobState, LimitExceededError,
                                QueueFullError)
from modules.version import VERSION

if TYPE_CHECKING:
    from modules.app_context import AppContext
    from modules.generation.txt2img import GenerationResult

ANONYMOUS = "sdapi-anonymous"


def sdapi_owner(principal: str | None) -> str:
    return principal or ANONYMOUS


def raise_for_submit_error(exc: Exception, user_errors: tuple[type[Exception], ...] = ()) -> None:
    """Map a refused submit to its HTTP answer: the known refusals to their status, any other of the job
    kind's ``user_errors`` to 400; re-raise the rest."""
    from modules.generation.samplers import SamplerError
    from modules.generation.validation import InvalidRequestError
    from modules.images.upscale import UpscaleError, UpscaleTooLarge
    from modules.images.upscalers import UpscalerError
    from modules.models.errors import ModelLoadError
    from modules.understanding.interrogate import InterrogatorMissing, UnknownInterrogateModel
    from modules.understanding.interrogate_job import InterrogateImageError

    if isinstance(exc, SamplerError):
        raise ApiError(400, str(exc), "SamplerNotFound") from None
    if isinstance(exc, UpscaleTooLarge):
        raise ApiError(413, str(exc), "LimitExceeded") from None
    if isinstance(exc, (InterrogatorMissing, UnknownInterrogateModel)):
        raise ApiError(404, str(exc), "ModelNotFound") from None
    if isinstance(exc, (UpscaleError, InterrogateImageError)):
        raise ApiError(400, str(exc), "InvalidRequest") from None
    if isinstance(exc, (InvalidRequestError, UpscalerError)):
        raise ApiError(400, str(exc), "InvalidRequest") from None
    if isinstance(exc, ModelLoadError):
        raise ApiError(404, str(exc), "ModelNotFound") from None
    if isinstance(exc, QueueFullError):
        raise ApiError(429, str(exc), "QueueFull") from None
    if isinstance(exc, DiskFullError):
        raise ApiError(507, str(exc), "InsufficientStorage") from None
    if isinstance(exc, LimitExceededError):
        raise ApiError(413, str(exc), "LimitExceeded") from None
    if isinstance(exc, IdempotencyConflictError):
        raise ApiError(409, str(exc), "IdempotencyConflict") from None
    if user_errors and isinstance(exc, user_errors):
        raise ApiError(400, str(exc), "InvalidRequest") from None
    raise exc


def processed_info(req: Any, result: "GenerationResult", denoising_strength: float | None = None,
                   warnings: Sequence[str] = ()) -> str:
    """A1111's ``Processed.js()``: the keys and their order are what clients parse. ``warnings`` (what the
    request asked for and did not get, :mod:`modules.api.sdapi_notes`, then the job's own) come last."""
    plan = result.seed_plan
    info = {
        "prompt": req.prompt,
        "all_prompts": result.prompts,
        "negative_prompt": req.negative_prompt,
        "all_negative_prompts": result.negative_prompts,
        "seed": result.seeds[0] if result.seeds else (plan.seed if plan else req.seed),
        "all_seeds": result.seeds,
        "subseed": result.subseeds[0] if result.subseeds else (plan.subseed if plan else req.subseed),
        "all_subseeds": result.subseeds,
        "subseed_strength": req.subseed_strength,
        "width": result.width,
        "height": result.height,
        "sampler_name": result.sampler_name,
        "cfg_scale": req.cfg_scale,
        "steps": req.steps,
        "batch_size": req.batch_size,
        "restore_faces": False,
        "face_restoration_model": None,
        "sd_model_name": result.model_name,
        "sd_model_hash": result.model_hash,
        "sd_vae_name": None,
        "sd_vae_hash": None,
        "seed_resize_from_w": req.seed_resize_from_w,
        "seed_resize_from_h": req.seed_resize_from_h,
        "denoising_strength": denoising_strength,
        "extra_generation_params": {"Schedule type": result.schedule_label},
        "index_of_first_image": 0,
        "infotexts": result.infotexts,
        "styles": req.styles,
        "job_timestamp": result.job_timestamp,
        "clip_skip": result.clip_skip or req.clip_skip,
        "is_using_inpainting_conditioning": False,
        "version": VERSION,
        "warnings": [*warnings, *result.warnings],
    }
    return json.dumps(info, default=lambda o: None)


def finished_result(job: Job) -> Any:
    if job.state is JobState.FAILED:
        if job.out_of_space:
            raise ApiError(507, job.error or "no space left on the device", "InsufficientStorage")
        raise ApiError(422 if job.user_error else 500, job.error or "the job failed",
                       "JobFailed" if job.user_error else "InternalError")
    if job.state is JobState.CANCELLED and job.result is None:
        raise ApiError(409, job.error or "the job was cancelled", "Cancelled")
    return job.result


def run_sdapi_job(ctx: "AppContext", req: Any, principal: str | None) -> Job:
    """Check (the kind's precheck), queue (owned by the caller, recorded) and wait for one job; a refused
    request is answered with its 4xx."""
    from modules.jobs.submit import submit_job

    try:
        job = submit_job(ctx, req, owner=sdapi_owner(principal), source="sdapi")
    except Exception as exc:  # noqa: BLE001 - mapped to 4xx or re-raised
        raise_for_submit_error(exc, ctx.kinds.of(req).user_errors)
    ctx.queue.wait(job.id)
    return job


def _generation_routes(router: APIRouter, ctx: "AppContext") -> None:
    from modules.api.sdapi_notes import lenient_request
    from modules.images.codec import encode_png_base64

    @router.post("/txt2img", response_model=TextToImageResponse,
                 responses=error_responses(400, 404, 409, 413, 422, 429, 500, 507))
    def txt2img(payload: SdTxt2ImgPayload = Body(...),
                principal: str | None = Depends(principal_of)) -> TextToImageResponse:
        try:
            req = payload.to_request()
        except ValueError as exc:  # pydantic ValidationError is a ValueError
            raise ApiError(422, first_error(exc), "ValidationError") from None
        req, notes = lenient_request(ctx, payload, req)
        job = run_sdapi_job(ctx, req, principal)
        result = finished_result(job)
        images = [encode_png_base64(img, text) for img, text in zip(result.images, result.infotexts)] \
            if payload.send_images else []
        denoising = req.denoising_strength if req.enable_hr else None
        return TextToImageResponse(images=images, parameters=payload.echo((result.width, result.height)),
                                   info=processed_info(req, result, denoising_strength=denoising, warnings=notes))

    @router.get("/progress", response_model=ProgressResponse, responses=error_responses(422))
    async def progress(background: BackgroundTasks, skip_current_image: bool = False) -> ProgressResponse:
        """Answers at once: the preview is the last one made; a newer one is made after the answer
        is sent (for the next poll), so polling never waits for a VAE decode."""
        job = ctx.queue.current()
        worker_note = ctx.queue.worker_status().describe()  # a stopped worker or held-back jobs, said plainly
        if job is None:
            return ProgressResponse(progress=0.0, eta_relative=0.0, state=ProgressState(), textinfo=worker_note)
        snap = job.progress
        state = ProgressState(
            interrupted=job.control.interrupt_event.is_set(), skipped=job.control.skip_event.is_set(),
            job=job.id, job_count=snap.job_count, job_no=snap.job_no, sampling_step=snap.step,
            sampling_steps=snap.total_steps, job_timestamp=str(int(job.started_at or 0)))
        fraction = min(1.0, 0.01 + snap.fraction) if snap.total_steps else 0.01
        current_image = None
        if not skip_current_image and snap.preview_id > 0:
            png, stale = job.control.cached_preview_png()
            if stale:
                background.add_task(job.control.preview_png)
            if png is not None:
                current_image = base64.b64encode(png).decode("ascii")
        return ProgressResponse(progress=fraction, eta_relative=snap.eta_seconds() or 0.0, state=state,
                                current_image=current_image, textinfo=snap.text or worker_note)

    @router.post("/interrupt", response_model=dict[str, Any])
    def interrupt(principal: str | None = Depends(principal_of)) -> dict[str, Any]:
        # with credentials configured, a caller stops only its own running job
        ctx.queue.interrupt(owner=principal)
        return {}

    @router.post("/skip", response_model=None, responses=NULL_RESPONSE)
    def skip(principal: str | None = Depends(principal_of)) -> None:
        ctx.queue.skip(owner=principal)
        return None


def build_sdapi_router(ctx: "AppContext") -> APIRouter:
    from modules.api.sdapi_images import add_image_routes
    from modules.api.sdapi_img2img import add_img2img_route
    from modules.api.sdapi_listings import add_listing_routes

    router = APIRouter(prefix="/sdapi/v1", tags=["A1111-compatible API"])
    _generation_routes(router, ctx)
    add_img2img_route(router, ctx)
    add_image_routes(router, ctx)
    add_listing_routes(router, ctx)
    return router


def first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return f"{where}: {first.get('msg')}" if where else str(first.get("msg"))
    return str(exc)
