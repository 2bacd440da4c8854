"""A1111's img2img resize modes (``modules/images.py: resize_image``), with the same geometry.

=====  ============================  ==========================================================
mode   A1111 label                   what happens to a ``src`` image for a ``width x height`` target
=====  ============================  ==========================================================
0      Just resize                   stretched to ``width x height`` (aspect ratio not kept)
1      Crop and resize               scaled to cover the target, centred, the overflow cropped
2      Resize and fill               scaled to fit inside, centred, the empty bands filled by
                                     stretching the image's outermost row/column
3      Just resize (latent upscale)  the image is encoded at its own size and the *latents* are
                                     resized (bilinear); the pixel-space stand-in is mode 0
=====  ============================  ==========================================================

Upscaling (when the scaled image is larger than the source) goes through a named upscaler
(:class:`modules.images.upscalers.UpscalerSet`), Lanczos by default, exactly as A1111's inner
``resize()``: model-upscale by the needed factor, then Lanczos to the exact size. Masks (mode "L")
are always resized with Lanczos.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from PIL import Image

if TYPE_CHECKING:
    from modules.images.upscalers import UpscalerSet

RESIZE_MODES: Final[tuple[str, ...]] = (
    "Just resize", "Crop and resize", "Resize and fill", "Just resize (latent upscale)")
LANCZOS: Final = Image.Resampling.LANCZOS


class ResizeError(ValueError):
    """A resize that cannot be done (unknown mode, empty target); the message is for the user."""


def _resize(image: Image.Image, width: int, height: int, upscaler: str | None,
            upscalers: "UpscalerSet | None") -> Image.Image:
    """A1111's inner ``resize(im, w, h)``."""
    if upscaler in (None, "None", "Lanczos") or upscalers is None or image.mode == "L":
        return image.resize((width, height), resample=LANCZOS)
    scale = max(width / image.width, height / image.height)
    if scale > 1.0:
        image = upscalers.upscale_image(image, scale, upscaler)
    if image.width != width or image.height != height:
        image = image.resize((width, height), resample=LANCZOS)
    return image


def resize_image(mode: int, image: Image.Image, width: int, height: int, *, upscaler: str | None = None,
                 upscalers: "UpscalerSet | None" = None) -> Image.Image:
    """Resize ``image`` to exactly ``width x height`` with A1111 resize ``mode`` (see module doc)."""
    if width < 1 or height < 1:
        raise ResizeError(f"cannot resize to {width}x{height}")
    if mode not in (0, 1, 2, 3):
        raise ResizeError(f"resize_mode must be 0..3 ({', '.join(RESIZE_MODES)}), got {mode}")
    if mode in (0, 3):
        return _resize(image, width, height, upscaler, upscalers)
    ratio = width / height
    src_ratio = image.width / image.height
    fill_mode = "RGB" if image.mode != "L" else "L"
    if mode == 1:
        src_w = width if ratio > src_ratio else image.width * height // image.height
        src_h = height if ratio <= src_ratio else image.height * width // image.width
        resized = _resize(image, src_w, src_h, upscaler, upscalers)
        result = Image.new(fill_mode, (width, height))
        result.paste(resized, box=(width // 2 - src_w // 2, height // 2 - src_h // 2))
        return result
    src_w = width if ratio < src_ratio else image.width * height // image.height
    src_h = height if ratio >= src_ratio else image.height * width // image.width
    resized = _resize(image, src_w, src_h, upscaler, upscalers)
    result = Image.new(fill_mode, (width, height))
    result.paste(resized, box=(width // 2 - src_w // 2, height // 2 - src_h // 2))
    if ratio < src_ratio:
        fill_height = height // 2 - src_h // 2
        if fill_height > 0:
            result.paste(resized.resize((width, fill_height), box=(0, 0, width, 0)), box=(0, 0))
            result.paste(resized.resize((width, fill_height), box=(0, resized.height, width, resized.height)),
                         box=(0, fill_height + src_h))
    elif ratio > src_ratio:
        fill_width = width // 2 - src_w // 2
        if fill_width > 0:
            result.paste(resized.resize((fill_width, height), box=(0, 0, 0, height)), box=(0, 0))
            result.paste(resized.resize((fill_width, height), box=(resized.width, 0, resized.width, height)),
                         box=(fill_width + src_w, 0))
    return result
