"""Inpainting and outpainting geometry, in pixels, as A1111 does it (``processing.py`` img2img ``init``,
``modules/masking.py``, ``apply_overlay``/``uncrop``).

* :func:`prepare_mask`: mask image -> binary (white, or an RGBA sketch's alpha) -> optional invert
  -> Gaussian blur in x then y (OpenCV, A1111's kernel size ``2*int(2.5*sigma+0.5)+1``).
* :func:`prepare_inpaint`: for one init image, the processing-size init image (with the masked area
  pre-filled for "fill"), the latent mask, and the overlay that puts the original back:
  - *Whole picture*: image and mask resized with the request's resize mode; the overlay alpha is
    ``255 - clip(2 * mask)``.
  - *Only masked* (``inpaint_full_res``): the mask's bounding box plus padding, widened to the
    processing aspect ratio, is cropped, processed at the processing size and pasted back with
    "crop and resize"; the overlay alpha is ``255 - mask``.
* :func:`apply_overlay`: composite the original over the result; where the (blurred) mask is 0 the
  output pixel **is** the input pixel.
* :func:`outpaint_canvas`: a larger canvas with the image at its offset, the new area pre-filled by
  stretching the border pixels, and the mask of what to paint; the original region is protected so
  it comes back unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from modules.generation.runners.soft_inpaint import soft_infotext, soft_overlay_mask
from modules.images.resize import resize_image

if TYPE_CHECKING:
    from modules.generation.requests import Img2ImgRequest, Outpaint

#: A1111 "Masked content" labels (infotext), index = ``inpainting_fill``
MASKED_CONTENT = ("fill", "original", "latent noise", "latent nothing")


class MaskError(ValueError):
    """A mask that cannot be used (empty, unreadable); message for the user."""


# --------------------------------------------------------------------------- masks


def binary_mask(image: Image.Image, round_mask: bool = True) -> Image.Image:
    """A1111 ``create_binary_mask``: an RGBA sketch's alpha (when not fully opaque), else luminance;
    thresholded at 128 when ``round_mask``."""
    if image.mode == "RGBA" and image.getextrema()[-1] != (255, 255):
        mask = image.split()[-1].convert("L")
    else:
        mask = image.convert("L")
    return mask.point(lambda v: 255 if v > 128 else 0) if round_mask else mask


def gaussian_blur(mask: Image.Image, blur_x: int, blur_y: int) -> Image.Image:
    """A1111's separable mask blur (x then y) with OpenCV's Gaussian kernels."""
    import cv2

    array = np.array(mask)
    if blur_x > 0:
        size = 2 * int(2.5 * blur_x + 0.5) + 1
        array = cv2.GaussianBlur(array, (size, 1), blur_x)
    if blur_y > 0:
        size = 2 * int(2.5 * blur_y + 0.5) + 1
        array = cv2.GaussianBlur(array, (1, size), blur_y)
    return Image.fromarray(array)


def prepare_mask(mask_image: Image.Image, *, invert: bool, blur_x: int, blur_y: int, round_mask: bool = True,
                 protect: Image.Image | None = None) -> Image.Image:
    """Binary mask, optionally inverted, then blurred; ``protect`` (white = keep) is forced to 0 after the blur."""
    mask = binary_mask(mask_image, round_mask)
    if invert:
        mask = ImageOps.invert(mask)
    mask = gaussian_blur(mask, blur_x, blur_y)
    if protect is not None:
        mask = Image.fromarray(np.where(np.array(protect) > 127, 0, np.array(mask)).astype(np.uint8))
    return mask


def fill(image: Image.Image, mask: Image.Image) -> Image.Image:
    """A1111 ``masking.fill``: masked pixels replaced by colours blurred in from the unmasked ones."""
    image_mod = Image.new("RGBA", image.size)
    image_masked = Image.new("RGBa", image.size)
    image_masked.paste(image.convert("RGBA").convert("RGBa"), mask=ImageOps.invert(mask.convert("L")))
    image_masked = image_masked.convert("RGBa")
    for radius, repeats in ((256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1)):
        blurred = image_masked.filter(ImageFilter.GaussianBlur(radius)).convert("RGBA")
        for _ in range(repeats):
            image_mod.alpha_composite(blurred)
    return image_mod.convert("RGB")


# --------------------------------------------------------------------------- only masked: crop / paste


Box = tuple[int, int, int, int]


def crop_region(mask: Image.Image, pad: int = 0) -> Box | None:
    """A1111 ``get_crop_region_v2``: the mask's bounding box grown by ``pad`` (clipped); None if empty."""
    box = mask.getbbox()
    if not box:
        return None
    x1, y1, x2, y2 = box
    if not pad:
        return box
    return max(x1 - pad, 0), max(y1 - pad, 0), min(x2 + pad, mask.width), min(y2 + pad, mask.height)


def expand_crop_region(region: Box, processing_width: int, processing_height: int,
                       image_width: int, image_height: int) -> Box:
    """A1111 ``expand_crop_region``: widen the short side to the processing aspect ratio, inside the image."""
    x1, y1, x2, y2 = region
    ratio_crop = (x2 - x1) / (y2 - y1)
    ratio_processing = processing_width / processing_height
    if ratio_crop > ratio_processing:
        desired = (x2 - x1) / ratio_processing
        diff = int(desired - (y2 - y1))
        y1 -= diff // 2
        y2 += diff - diff // 2
        if y2 >= image_height:
            y1 -= y2 - image_height
            y2 = image_height
        if y1 < 0:
            y2 -= y1
            y1 = 0
        y2 = min(y2, image_height)
    else:
        desired = (y2 - y1) * ratio_processing
        diff = int(desired - (x2 - x1))
        x1 -= diff // 2
        x2 += diff - diff // 2
        if x2 >= image_width:
            x1 -= x2 - image_width
            x2 = image_width
        if x1 < 0:
            x2 -= x1
            x1 = 0
        x2 = min(x2, image_width)
    return x1, y1, x2, y2


def make_overlay(image: Image.Image, mask_for_overlay: Image.Image) -> Image.Image:
    """The original with alpha ``255 - mask`` (A1111's ``overlay_images`` entry)."""
    masked = Image.new("RGBa", image.size)
    masked.paste(image.convert("RGBA").convert("RGBa"), mask=ImageOps.invert(mask_for_overlay.convert("L")))
    return masked.convert("RGBA")


def apply_overlay(image: Image.Image, paste_to: Box | None, overlay: Image.Image | None) -> Image.Image:
    """A1111 ``apply_overlay``: uncrop (``paste_to`` = x, y, w, h) then composite the original on top."""
    if overlay is None:
        return image
    if paste_to is not None:
        x, y, w, h = paste_to
        base = Image.new("RGBA", overlay.size)
        base.paste(resize_image(1, image, w, h), (x, y))
        image = base
    elif image.size != overlay.size:
        image = image.resize(overlay.size, resample=Image.Resampling.LANCZOS)
    result = image.convert("RGBA")
    result.alpha_composite(overlay)
    return result.convert("RGB")


# --------------------------------------------------------------------------- per-image preparation


@dataclass
class PreparedInit:
    """One init image ready for encoding, and what is needed to finish its outputs."""

    init: Image.Image                      # RGB at the processing size (pre-filled for "fill")
    encode_source: Image.Image | None      # resize mode 3: the image to encode at its own size
    latent_mask: Image.Image | None        # L at the processing size (white = paint)
    overlay: Image.Image | None            # RGBA at the output size
    paste_to: Box | None                   # only masked: where the result goes (x, y, w, h)


def prepare_inpaint(image: Image.Image, mask: Image.Image | None, req: "Img2ImgRequest", width: int,
                    height: int, params: dict[str, Any], protect: Image.Image | None = None) -> PreparedInit:
    """Prepare ``image`` (RGB) and its raw ``mask`` (or None for plain img2img) for processing at
    ``width x height``; A1111 infotext keys are added to ``params``."""
    mode = req.resize_mode
    if mask is None and getattr(req, "soft_inpainting", False):
        raise MaskError("soft inpainting blends at a mask's edge: paint a mask, or turn soft inpainting off")
    if mask is None:
        if mode == 3:
            return PreparedInit(image, _multiple_of_8(image), None, None, None)
        return PreparedInit(resize_image(mode, image, width, height), None, None, None, None)

    if mask.size != image.size:
        mask = mask.resize(image.size, resample=Image.Resampling.LANCZOS)
    image_mask = prepare_mask(mask, invert=bool(req.inpainting_mask_invert), blur_x=req.mask_blur_x,
                              blur_y=req.mask_blur_y, round_mask=req.mask_round, protect=protect)
    if req.inpainting_mask_invert:
        params["Mask mode"] = "Inpaint not masked"
    if (req.mask_blur_x > 0 or req.mask_blur_y > 0) and req.effective_mask_blur is not None:
        params["Mask blur"] = req.effective_mask_blur
    if image_mask.getbbox() is None:
        raise MaskError("the mask is empty: paint the area to change (or use img2img without a mask)")

    paste_to: Box | None = None
    if req.inpaint_full_res:
        overlay_mask = image_mask
        region = crop_region(image_mask, req.inpaint_full_res_padding)
        assert region is not None
        x1, y1, x2, y2 = expand_crop_region(region, width, height, image.width, image.height)
        paste_to = (x1, y1, x2 - x1, y2 - y1)
        latent_mask = resize_image(2, image_mask.crop((x1, y1, x2, y2)), width, height)
        init = resize_image(2, image.crop((x1, y1, x2, y2)), width, height)
        overlay_source = image
        params["Inpaint area"] = "Only masked"
        params["Masked area padding"] = req.inpaint_full_res_padding
    else:
        pixel_mode = 0 if mode == 3 else mode
        latent_mask = resize_image(pixel_mode, image_mask, width, height)
        overlay_mask = Image.fromarray(np.clip(np.array(latent_mask).astype(np.float32) * 2, 0, 255).astype(np.uint8))
        init = resize_image(pixel_mode, image, width, height)
        overlay_source = init

    encode_source = None
    if req.inpainting_fill != 1:
        init = fill(init, latent_mask)
        if mode == 3 and not req.inpaint_full_res:
            encode_source = _multiple_of_8(fill(image, image_mask))
    elif mode == 3 and not req.inpaint_full_res:
        encode_source = _multiple_of_8(image)
    if req.inpainting_fill != 1:
        params["Masked content"] = MASKED_CONTENT[req.inpainting_fill]
    if getattr(req, "soft_inpainting", False):
        source_mask = image_mask if req.inpaint_full_res else latent_mask
        overlay_mask = soft_overlay_mask(source_mask, req.soft_inpainting_softness, req.soft_inpainting_preservation)
        params.update(soft_infotext(req))
    return PreparedInit(init, encode_source, latent_mask.convert("L"), make_overlay(overlay_source, overlay_mask),
                        paste_to)


def _multiple_of_8(image: Image.Image) -> Image.Image:
    """Resize mode 3 encodes the image at its own size, trimmed by Lanczos to a multiple of 8."""
    w, h = max(8, image.width // 8 * 8), max(8, image.height // 8 * 8)
    return image if image.size == (w, h) else image.resize((w, h), resample=Image.Resampling.LANCZOS)


# --------------------------------------------------------------------------- outpainting


def outpaint_canvas(image: Image.Image, mask: Image.Image | None, sides: "Outpaint",
                    multiple: int) -> tuple[Image.Image, Image.Image, Image.Image]:
    """(canvas, mask, protect) for outpainting ``image`` by ``sides``.

    The canvas is grown to a multiple of ``multiple`` (any shortfall goes to the right/bottom
    extension, or the left/top one when only that side grows). The new area is pre-filled by
    stretching the border rows/columns. ``mask`` (white = paint) covers the new area plus any user
    mask; ``protect`` is the rest of the original region, which must come back unchanged.
    """
    left, right, up, down = sides.left, sides.right, sides.up, sides.down
    width, height = image.width + left + right, image.height + up + down
    extra_w, extra_h = -width % multiple, -height % multiple
    if extra_w:
        left, right = (left + extra_w, right) if left and not right else (left, right + extra_w)
    if extra_h:
        up, down = (up + extra_h, down) if up and not down else (up, down + extra_h)
    width, height = width + extra_w, height + extra_h

    canvas = Image.new("RGB", (width, height))
    canvas.paste(image.convert("RGB"), (left, up))
    array = np.array(canvas)
    y0, y1, x0, x1 = up, up + image.height, left, left + image.width
    array[:y0, x0:x1] = array[y0, x0:x1]
    array[y1:, x0:x1] = array[y1 - 1, x0:x1]
    array[:, :x0] = array[:, x0:x0 + 1]
    array[:, x1:] = array[:, x1 - 1:x1]
    canvas = Image.fromarray(array)

    paint = Image.new("L", (width, height), 255)
    paint.paste(Image.new("L", image.size, 0), (left, up))
    protect = Image.new("L", (width, height), 0)
    protect.paste(Image.new("L", image.size, 255), (left, up))
    if mask is not None:
        user = binary_mask(mask.resize(image.size, resample=Image.Resampling.NEAREST) if mask.size != image.size
                           else mask)
        placed = Image.new("L", (width, height), 0)
        placed.paste(user, (left, up))
        paint = Image.fromarray(np.maximum(np.array(paint), np.array(placed)))
        protect = Image.fromarray(np.where(np.array(placed) > 127, 0, np.array(protect)).astype(np.uint8))
    return canvas, paint, protect
