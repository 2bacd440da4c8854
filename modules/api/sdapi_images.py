"""``/sdapi/v1`` image routes: png-info, interrogate, extra-single-image, extra-batch-images.

Input images are raw base64 or ``data:image/...;base64,`` URIs, decoded with size limits (a bad one is a
400 naming it). Extras (:mod:`modules.images.extras_job`) and interrogate
(:mod:`modules.understanding.interrogate_job`) are job kinds: the routes queue them and wait, as txt2img does.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends
from PIL import Image

from modules.api.errors import ApiError, error_responses
from modules.api.sdapi_listing_models import (ExtrasBase, ExtrasBatchImagesPayload, ExtrasBatchImagesResponse,
                                              ExtrasSingleImagePayload, ExtrasSingleImageResponse,
                                              InterrogatePayload, InterrogateResponse)
from modules.api.sdapi_models import PngInfoPayload, PngInfoResponse
from modules.api.security import principal_of

if TYPE_CHECKING:
    from modules.app_context import AppContext
    from modules.images.extras_job import ExtrasResult


def decode_image(data: str, what: str = "image") -> Image.Image:
    from modules.images.codec import ImageDecodeError, decode_request_image

    try:
        return decode_request_image(data, what)
    except ImageDecodeError as exc:
        raise ApiError(400, str(exc), "InvalidImage") from None


def _extras(ctx: "AppContext", payload: ExtrasBase, images: list[str], names: list[str],
            principal: str | None) -> "ExtrasResult":
    """Run the upscale as an ``extras`` job (the device's queue) and wait for it."""
    from pydantic import ValidationError

    from modules.api.sdapi_common import finished_result, first_error, run_sdapi_job
    from modules.images.extras_job import ExtrasRequest

    if payload.gfpgan_visibility > 0 or payload.codeformer_visibility > 0:
        raise ApiError(400, "face restoration (GFPGAN/CodeFormer) is not available on this server: "
                            "set gfpgan_visibility and codeformer_visibility to 0", "NotAvailable")
    from modules.images.extras_job import ExtrasResult

    if not images:  # A1111 answers an empty batch with no images
        return ExtrasResult(images=[], infotext="", source_infotexts=[])
    try:
        request = ExtrasRequest(images=images, names=names, resize_mode=payload.resize_mode,
                                upscaling_resize=payload.upscaling_resize,
                                upscaling_resize_w=payload.upscaling_resize_w,
                                upscaling_resize_h=payload.upscaling_resize_h, upscaling_crop=payload.upscaling_crop,
                                upscaler_1=payload.upscaler_1 or "None", upscaler_2=payload.upscaler_2 or "None",
                                extras_upscaler_2_visibility=payload.extras_upscaler_2_visibility)
    except ValidationError as exc:
        raise ApiError(422, first_error(exc), "ValidationError") from None
    return finished_result(run_sdapi_job(ctx, request, principal))


def _encoded(result: "ExtrasResult") -> list[str]:
    """Raw base64 PNGs; A1111 keeps each image's ``parameters`` and adds a ``postprocessing`` text."""
    from modules.images.codec import encode_png_base64_with_texts

    return [encode_png_base64_with_texts(image, {"parameters": source, "postprocessing": result.infotext})
            for image, source in zip(result.images, result.source_infotexts)]


def _html(text: str) -> str:
    return "<p>" + html.escape(text) + "</p>" if text else ""


def add_image_routes(router: APIRouter, ctx: "AppContext") -> None:
    @router.post("/png-info", response_model=PngInfoResponse, responses=error_responses(400, 413, 422))
    def png_info(payload: PngInfoPayload) -> PngInfoResponse:
        from modules.images.infotext import parse_infotext
        from modules.images.saving import read_infotext

        image = decode_image(payload.image)
        text = read_infotext(image) or ""
        items = {k: v for k, v in image.info.items() if isinstance(v, str) and k != "parameters"}
        return PngInfoResponse(info=text, items=items, parameters=parse_infotext(text) if text else {})

    @router.post("/interrogate", response_model=InterrogateResponse, responses=error_responses(400, 404, 413, 422))
    def interrogate(payload: InterrogatePayload, principal: str | None = Depends(principal_of)) -> InterrogateResponse:
        from modules.api.sdapi_common import finished_result, raise_for_submit_error, run_sdapi_job
        from modules.understanding.backends.base import BackendError
        from modules.understanding.interrogate import UnknownInterrogateModel
        from modules.understanding.interrogate_job import interrogate_request

        try:  # over the chosen understanding backend (Settings → understanding_backend)
            request = interrogate_request(ctx, payload.image, payload.model)
        except (UnknownInterrogateModel, BackendError) as exc:
            raise_for_submit_error(exc, (BackendError,))
            raise
        job = run_sdapi_job(ctx, request, principal)
        return InterrogateResponse(caption=finished_result(job).caption)

    @router.post("/extra-single-image", response_model=ExtrasSingleImageResponse,
                 responses=error_responses(400, 413, 422, 429, 507))
    def extra_single_image(payload: ExtrasSingleImagePayload,
                           principal: str | None = Depends(principal_of)) -> ExtrasSingleImageResponse:
        result = _extras(ctx, payload, [payload.image], ["image"], principal)
        return ExtrasSingleImageResponse(image=_encoded(result)[0] if payload.show_extras_results else None,
                                         html_info=_html(result.infotext))

    @router.post("/extra-batch-images", response_model=ExtrasBatchImagesResponse,
                 responses=error_responses(400, 413, 422, 429, 507))
    def extra_batch_images(payload: ExtrasBatchImagesPayload,
                           principal: str | None = Depends(principal_of)) -> ExtrasBatchImagesResponse:
        names = [f"imageList[{index}]" for index in range(len(payload.imageList))]
        result = _extras(ctx, payload, [item.data for item in payload.imageList], names, principal)
        return ExtrasBatchImagesResponse(images=_encoded(result) if payload.show_extras_results else [],
                                         html_info=_html(result.infotext))
