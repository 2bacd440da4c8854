"""``POST /sdapi/v1/img2img``: A1111's img2img / inpainting on the job queue.

A1111 semantics: a request without ``init_images`` is 404 "Init image not found"; init images and
the mask are raw base64 or data URIs (decoded here first, so a bad image is a 400 before queueing);
``parameters`` echoes the request without the images unless ``include_init_images``; ``info`` is
``Processed.js()`` with the denoising strength.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, Body, Depends

from modules.api.errors import ApiError, error_responses
from modules.api.sdapi_models import SdImg2ImgPayload, TextToImageResponse
from modules.api.security import principal_of

if TYPE_CHECKING:
    from modules.app_context import AppContext


def add_img2img_route(router: APIRouter, ctx: "AppContext") -> None:
    @router.post("/img2img", response_model=TextToImageResponse,
                 responses=error_responses(400, 404, 409, 413, 422, 429, 500, 507))
    def img2img(payload: SdImg2ImgPayload = Body(...),
                principal: str | None = Depends(principal_of)) -> TextToImageResponse:
        from modules.api.sdapi_common import (encoded_images, finished_result, first_error, processed_info,
                                              run_sdapi_job)
        from modules.api.sdapi_notes import lenient_request

        if not payload.init_images:
            raise ApiError(404, "Init image not found", "InitImageNotFound")
        try:
            req = payload.to_request(ctx.settings.current.CLIP_stop_at_last_layers)
        except ValueError as exc:
            raise ApiError(422, first_error(exc), "ValidationError") from None
        req, notes = lenient_request(ctx, payload, req)
        job = run_sdapi_job(ctx, req, principal)
        result = finished_result(job)
        images = encoded_images(result) if payload.send_images else []
        info = processed_info(req, result, denoising_strength=req.denoising_strength, warnings=notes)
        return TextToImageResponse(images=images, parameters=payload.echo((result.width, result.height)), info=info)
