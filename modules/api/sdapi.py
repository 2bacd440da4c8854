"""The A1111-compatible ``/sdapi/v1`` routes, with A1111's exact response shapes.

Every route answers JSON (``null`` where A1111 answers nothing) because clients such as
``webuiapi`` call ``.json()`` on every response. Generation goes through the job queue, owned by
the caller (an API key, a basic-auth user, or "sdapi-anonymous"), and is recorded in the job
store like any other job; images are saved only when ``save_images`` is true (A1111 semantics).

This module holds the txt2img, progress, interrupt and skip routes and assembles the others:
:mod:`modules.api.sdapi_img2img`, :mod:`modules.api.sdapi_listings` (listings, options, system) and
:mod:`modules.api.sdapi_images` (png-info, interrogate, extras); what they share is in
:mod:`modules.api.sdapi_common`.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, BackgroundTasks, Body, Depends

from modules.api.errors import ApiError, error_responses
from modules.api.sdapi_common import encoded_images, finished_result, first_error, processed_info, run_sdapi_job
from modules.api.sdapi_models import (NULL_RESPONSE, ProgressResponse, ProgressState, SdTxt2ImgPayload,
                                      TextToImageResponse)
from modules.api.security import principal_of

if TYPE_CHECKING:
    from modules.app_context import AppContext


def _generation_routes(router: APIRouter, ctx: "AppContext") -> None:
    from modules.api.sdapi_notes import lenient_request

    @router.post("/txt2img", response_model=TextToImageResponse,
                 responses=error_responses(400, 404, 409, 413, 422, 429, 500, 507))
    def txt2img(payload: SdTxt2ImgPayload = Body(...),
                principal: str | None = Depends(principal_of)) -> TextToImageResponse:
        try:
            req = payload.to_request(ctx.settings.current.CLIP_stop_at_last_layers)
        except ValueError as exc:  # pydantic ValidationError is a ValueError
            raise ApiError(422, first_error(exc), "ValidationError") from None
        req, notes = lenient_request(ctx, payload, req)
        job = run_sdapi_job(ctx, req, principal)
        result = finished_result(job)
        images = encoded_images(result) if payload.send_images else []
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
    from modules.api.sdapi_train import add_train_routes

    router = APIRouter(prefix="/sdapi/v1", tags=["A1111-compatible API"])
    _generation_routes(router, ctx)
    add_img2img_route(router, ctx)
    add_image_routes(router, ctx)
    add_listing_routes(router, ctx)
    add_train_routes(router, ctx)
    return router
