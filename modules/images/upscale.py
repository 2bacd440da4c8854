"""The Extras tab's upscale step: A1111's "None", "Lanczos", "Nearest" (no weights) and, through
:class:`modules.images.upscalers.UpscalerSet`, any ESRGAN-family model found in ``models/ESRGAN``.

Semantics follow A1111's ``scripts/postprocessing_upscale.py`` and ``modules/upscaler.py``:

* resize mode 0 scales by ``upscaling_resize``; mode 1 scales to ``upscaling_resize_w`` x
  ``upscaling_resize_h`` (by the larger of the two ratios) and, with ``upscaling_crop``, centre-crops
  to exactly that size;
* the target of a scale is rounded down to a multiple of 8, as ``Upscaler.upscale`` does;
* upscaler 1 "None" leaves the image as it is; a second upscaler is blended in with
  ``extras_upscaler_2_visibility``;
* the output PNG keeps the input's ``parameters`` and gains a ``postprocessing`` text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from PIL import Image

if TYPE_CHECKING:
    from modules.images.upscalers import UpscalerSet

LANCZOS: Final = Image.Resampling.LANCZOS
NEAREST: Final = Image.Resampling.NEAREST
#: name -> PIL resampling filter; None for A1111's "None" upscaler
UPSCALERS: Final[dict[str, Image.Resampling | None]] = {"None": None, "Lanczos": LANCZOS, "Nearest": NEAREST}
MAX_OUTPUT_PIXELS: Final[int] = 4096 * 4096
MAX_SCALE: Final[float] = 8.0


class UpscaleError(ValueError):
    """A request the upscalers cannot do (unknown name, bad size); the message is for the user."""


class UpscaleTooLarge(UpscaleError):
    """The result would exceed :data:`MAX_OUTPUT_PIXELS`."""


@dataclass(frozen=True)
class UpscaleParams:
    resize_mode: int = 0
    upscaling_resize: float = 2.0
    upscaling_resize_w: int = 512
    upscaling_resize_h: int = 512
    upscaling_crop: bool = True
    upscaler_1: str = "None"
    upscaler_2: str = "None"
    extras_upscaler_2_visibility: float = 0.0


def list_upscalers(upscalers: "UpscalerSet | None" = None) -> list[dict[str, object]]:
    """The ``/sdapi/v1/upscalers`` items (A1111's shape; built-ins report scale 4 like A1111)."""
    items: list[dict[str, object]] = [
        {"name": name, "model_name": None, "model_path": None, "model_url": None, "scale": 4.0} for name in UPSCALERS]
    for model in upscalers.models() if upscalers is not None else ():
        items.append({"name": model.name, "model_name": model.name, "model_path": str(model.path),
                      "model_url": None, "scale": 4.0})
    return items


def _names(upscalers: "UpscalerSet | None") -> list[str]:
    return [*UPSCALERS, *(m.name for m in upscalers.models())] if upscalers is not None else list(UPSCALERS)


def _resolve(name: str | None, upscalers: "UpscalerSet | None" = None) -> str | None:
    """The canonical upscaler name (None for "None"); UpscaleError listing the choices if unknown."""
    key = (name or "None").strip()
    for known in _names(upscalers):
        if known.lower() == key.lower():
            return None if known == "None" else known
    raise UpscaleError(f"Upscaler not found: {key!r}; available: {', '.join(_names(upscalers))}")


def _scale_image(image: Image.Image, scale: float, name: str, upscalers: "UpscalerSet | None") -> Image.Image:
    dest_w = int((image.width * scale) // 8 * 8)
    dest_h = int((image.height * scale) // 8 * 8)
    if dest_w < 1 or dest_h < 1:
        raise UpscaleError(f"scaling {image.width}x{image.height} by {scale:g} gives an empty image")
    if dest_w * dest_h > MAX_OUTPUT_PIXELS:
        raise UpscaleTooLarge(f"the result would be {dest_w}x{dest_h}, over the {MAX_OUTPUT_PIXELS}-pixel limit")
    resample = UPSCALERS.get(name)
    if resample is not None:
        return image.resize((dest_w, dest_h), resample=resample)
    from modules.images.upscalers import UpscalerError

    assert upscalers is not None  # _resolve only yields model names when a set is given
    try:
        return upscalers.upscale_image(image, scale, name)
    except UpscalerError as exc:
        raise UpscaleError(str(exc)) from None


def _upscale_once(image: Image.Image, name: str, params: UpscaleParams,
                  upscalers: "UpscalerSet | None") -> Image.Image:
    if params.resize_mode == 1:
        w, h = params.upscaling_resize_w, params.upscaling_resize_h
        scale = max(w / image.width, h / image.height)
    else:
        w = h = 0
        scale = params.upscaling_resize
    result = _scale_image(image, scale, name, upscalers)
    if params.resize_mode == 1 and params.upscaling_crop:
        cropped = Image.new("RGB", (w, h))
        cropped.paste(result, box=(w // 2 - result.width // 2, h // 2 - result.height // 2))
        result = cropped
    return result


def check_params(params: UpscaleParams, upscalers: "UpscalerSet | None" = None) -> None:
    _resolve(params.upscaler_1, upscalers)
    _resolve(params.upscaler_2, upscalers)
    if params.resize_mode not in (0, 1):
        raise UpscaleError(f"resize_mode must be 0 (scale by) or 1 (scale to), got {params.resize_mode}")
    if params.resize_mode == 0 and not 0 < params.upscaling_resize <= MAX_SCALE:
        raise UpscaleError(f"upscaling_resize must be above 0 and at most {MAX_SCALE:g}, got {params.upscaling_resize:g}")
    if params.resize_mode == 1 and (params.upscaling_resize_w < 1 or params.upscaling_resize_h < 1):
        raise UpscaleError("upscaling_resize_w and upscaling_resize_h must be at least 1")
    if params.resize_mode == 1 and params.upscaling_resize_w * params.upscaling_resize_h > MAX_OUTPUT_PIXELS:
        raise UpscaleTooLarge(f"{params.upscaling_resize_w}x{params.upscaling_resize_h} is over the "
                              f"{MAX_OUTPUT_PIXELS}-pixel limit")
    if not 0.0 <= params.extras_upscaler_2_visibility <= 1.0:
        raise UpscaleError("extras_upscaler_2_visibility must be between 0 and 1")


def planned_size(width: int, height: int, params: UpscaleParams,
                 upscalers: "UpscalerSet | None" = None) -> tuple[int, int]:
    """The size ``postprocess_upscale`` makes of a ``width`` x ``height`` image, checked against the limits
    without upscaling anything (UpscaleError / UpscaleTooLarge), so a request can be refused before it runs."""
    check_params(params, upscalers)
    if _resolve(params.upscaler_1, upscalers) is None:
        return width, height
    if params.resize_mode == 1:
        scale = max(params.upscaling_resize_w / width, params.upscaling_resize_h / height)
    else:
        scale = params.upscaling_resize
    dest_w, dest_h = int((width * scale) // 8 * 8), int((height * scale) // 8 * 8)
    if dest_w < 1 or dest_h < 1:
        raise UpscaleError(f"scaling {width}x{height} by {scale:g} gives an empty image")
    if dest_w * dest_h > MAX_OUTPUT_PIXELS:
        raise UpscaleTooLarge(f"the result would be {dest_w}x{dest_h}, over the {MAX_OUTPUT_PIXELS}-pixel limit")
    if params.resize_mode == 1 and params.upscaling_crop:
        return params.upscaling_resize_w, params.upscaling_resize_h
    return dest_w, dest_h


def postprocess_upscale(image: Image.Image, params: UpscaleParams,
                        upscalers: "UpscalerSet | None" = None) -> tuple[Image.Image, dict[str, str]]:
    """Upscale ``image`` as A1111's Extras tab does; returns (image, postprocessing info)."""
    check_params(params, upscalers)
    source = image.convert("RGB") if image.mode not in ("RGB", "RGBA") else image
    first, second = _resolve(params.upscaler_1, upscalers), _resolve(params.upscaler_2, upscalers)
    info: dict[str, str] = {}
    if first is None:
        return source.copy(), info
    result = _upscale_once(source, first, params, upscalers)
    if params.resize_mode == 1:
        info["Postprocess upscale to"] = f"{params.upscaling_resize_w}x{params.upscaling_resize_h}"
    else:
        info["Postprocess upscale by"] = f"{params.upscaling_resize:g}"
    info["Postprocess upscaler"] = first
    if second is not None and params.extras_upscaler_2_visibility > 0:
        other = _upscale_once(source, second, params, upscalers)
        if other.size != result.size:
            other = other.resize(result.size, resample=LANCZOS)
        if other.mode != result.mode:
            other = other.convert(result.mode)
        result = Image.blend(result, other, params.extras_upscaler_2_visibility)
        info["Postprocess upscaler 2"] = second
    return result, info


def infotext_of(info: dict[str, str]) -> str:
    """A1111's postprocessing infotext: ``key: value`` pairs joined by ", "."""
    return ", ".join(key if key == value else f"{key}: {value}" for key, value in info.items())
