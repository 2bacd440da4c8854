"""``/sdapi/v1`` image routes: png-info, interrogate, extra-single-image, extra-batch-images.

Input images are raw base64 or ``data:image/...;base64,`` URIs, decoded with size limits.
Extras use the weight-free upscalers of :mod:`modules.images.upscale` and run in the request
thread (no device needed); interrogate uses the world classifier (see :mod:`modules.api.interrogate`).
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from fastapi import APIRouter
from PIL import Image

from modules.api.errors import ApiError, error_responses
from modules.api.sdapi_listing_models import (ExtrasBase, ExtrasBatchImagesPayload, ExtrasBatchImagesResponse,
                                              ExtrasSingleImagePayload, ExtrasSingleImageResponse,
                                              InterrogatePayload, InterrogateResponse)
from modules.api.sdapi_models import PngInfoPayload, PngInfoResponse

if TYPE_CHECKING:
    from modules.app_context import AppContext
    from modules.images.upscale import UpscaleParams
    from modules.images.upscalers import UpscalerSet

MAX_UPLOAD_BYTES = 50 * 1024 * 1024
MAX_PIXELS = 64 * 1024 * 1024


def decode_image(data: str, what: str = "image") -> Image.Image:
    from modules.images.codec import ImageDecodeError, decode_image_base64

    try:
        return decode_image_base64(data, max_bytes=MAX_UPLOAD_BYTES, max_pixels=MAX_PIXELS)
    except ImageDecodeError as exc:
        raise ApiError(400, f"{what}: {exc}", "InvalidImage") from None


def _upscale_params(payload: ExtrasBase) -> "UpscaleParams":
    from modules.images.upscale import UpscaleParams

    if payload.gfpgan_visibility > 0 or payload.codeformer_visibility > 0:
        raise ApiError(400, "face restoration (GFPGAN/CodeFormer) is not available on this server: "
                            "set gfpgan_visibility and codeformer_visibility to 0", "NotAvailable")
    return UpscaleParams(resize_mode=payload.resize_mode, upscaling_resize=payload.upscaling_resize,
                         upscaling_resize_w=payload.upscaling_resize_w, upscaling_resize_h=payload.upscaling_resize_h,
                         upscaling_crop=payload.upscaling_crop, upscaler_1=payload.upscaler_1 or "None",
                         upscaler_2=payload.upscaler_2 or "None",
                         extras_upscaler_2_visibility=payload.extras_upscaler_2_visibility)


def _png_base64(image: Image.Image, texts: dict[str, str]) -> str:
    """Raw base64 PNG carrying ``texts`` as text chunks."""
    import base64
    import io

    from PIL import PngImagePlugin

    meta = PngImagePlugin.PngInfo()
    for key, value in texts.items():
        meta.add_text(key, value)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=meta)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _run_extras(image: Image.Image, params: "UpscaleParams", upscalers: "UpscalerSet") -> tuple[str, str]:
    """(raw base64 PNG, postprocessing infotext) of one image; A1111 keeps the image's
    ``parameters`` and adds a ``postprocessing`` text."""
    from modules.images.codec import read_infotext
    from modules.images.upscale import UpscaleError, UpscaleTooLarge, infotext_of, postprocess_upscale

    try:
        result, info = postprocess_upscale(image, params, upscalers)
    except UpscaleTooLarge as exc:
        raise ApiError(413, str(exc), "LimitExceeded") from None
    except UpscaleError as exc:
        raise ApiError(400, str(exc), "InvalidRequest") from None
    text = infotext_of(info)
    texts = {"parameters": read_infotext(image) or "", "postprocessing": text}
    return _png_base64(result, {k: v for k, v in texts.items() if v}), text


def _html(text: str) -> str:
    return "<p>" + html.escape(text) + "</p>" if text else ""


def add_image_routes(router: APIRouter, ctx: "AppContext") -> None:
    from modules.api.interrogate import InterrogatorMissing, UnknownInterrogateModel

    @router.post("/png-info", response_model=PngInfoResponse, responses=error_responses(400, 413, 422))
    def png_info(payload: PngInfoPayload) -> PngInfoResponse:
        from modules.images.infotext import parse_infotext
        from modules.images.saving import read_infotext

        image = decode_image(payload.image)
        text = read_infotext(image) or ""
        items = {k: v for k, v in image.info.items() if isinstance(v, str) and k != "parameters"}
        return PngInfoResponse(info=text, items=items, parameters=parse_infotext(text) if text else {})

    @router.post("/interrogate", response_model=InterrogateResponse, responses=error_responses(400, 404, 413, 422))
    def interrogate(payload: InterrogatePayload) -> InterrogateResponse:
        image = decode_image(payload.image)
        try:
            return InterrogateResponse(caption=ctx.interrogator.interrogate(image, payload.model))
        except (InterrogatorMissing, UnknownInterrogateModel) as exc:
            raise ApiError(404, str(exc), "ModelNotFound") from None

    @router.post("/extra-single-image", response_model=ExtrasSingleImageResponse,
                 responses=error_responses(400, 413, 422))
    def extra_single_image(payload: ExtrasSingleImagePayload) -> ExtrasSingleImageResponse:
        params = _upscale_params(payload)
        encoded, text = _run_extras(decode_image(payload.image), params, ctx.upscalers)
        return ExtrasSingleImageResponse(image=encoded if payload.show_extras_results else None, html_info=_html(text))

    @router.post("/extra-batch-images", response_model=ExtrasBatchImagesResponse,
                 responses=error_responses(400, 413, 422))
    def extra_batch_images(payload: ExtrasBatchImagesPayload) -> ExtrasBatchImagesResponse:
        params = _upscale_params(payload)
        images, text = [], ""
        for index, item in enumerate(payload.imageList):
            encoded, text = _run_extras(decode_image(item.data, f"imageList[{index}]"), params, ctx.upscalers)
            images.append(encoded)
        return ExtrasBatchImagesResponse(images=images if payload.show_extras_results else [], html_info=_html(text))
