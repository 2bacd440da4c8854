"""From the img2img tab's image widgets to the images an :class:`Img2ImgRequest` carries.

* img2img: the uploaded image;
* inpaint: the editor's background is the init image, every painted stroke (any colour, any layer)
  is the mask; an uploaded mask (white = repaint) is used instead when given;
* outpaint: the uploaded image and the pixels to add on each side.
"""

from __future__ import annotations

from typing import Any

from PIL import Image, ImageChops

MODES = ("img2img", "inpaint", "outpaint")


class InputError(ValueError):
    """The page's images cannot make a request (message for the user)."""


def editor_parts(value: Any) -> tuple[Image.Image | None, Image.Image | None]:
    """(background, mask of the painted strokes or None) of a ``gr.ImageEditor`` value (type "pil")."""
    if not isinstance(value, dict):
        return None, None
    background = value.get("background")
    layers = [layer for layer in value.get("layers") or [] if isinstance(layer, Image.Image)]
    if not isinstance(background, Image.Image):
        composite = value.get("composite")
        background = composite if isinstance(composite, Image.Image) else None
    mask: Image.Image | None = None
    for layer in layers:
        alpha = layer.convert("RGBA").getchannel("A").point(lambda a: 255 if a > 0 else 0)
        mask = alpha if mask is None else ImageChops.lighter(mask, alpha)
    if mask is not None and mask.getbbox() is None:
        mask = None  # nothing painted
    if mask is not None and background is not None and mask.size != background.size:
        mask = mask.resize(background.size, Image.Resampling.NEAREST)
    return background, mask


def uploaded_mask(image: Image.Image | None, size: tuple[int, int] | None) -> Image.Image | None:
    """An uploaded mask as "L" (white = repaint; an RGBA mask uses its alpha), resized to ``size``."""
    if image is None:
        return None
    if image.mode in ("RGBA", "LA") and image.getchannel("A").getextrema() != (255, 255):
        mask = image.getchannel("A")
    else:
        mask = image.convert("L")
    if size is not None and mask.size != size:
        mask = mask.resize(size, Image.Resampling.NEAREST)
    return mask


def request_images(mode: str, image: Any, editor: Any, mask_upload: Any, outpaint_image: Any
                   ) -> tuple[Image.Image, Image.Image | None]:
    """(init image, mask or None) for ``mode``; InputError with what is missing."""
    if mode == "inpaint":
        background, painted = editor_parts(editor)
        if background is None:
            raise InputError("inpaint needs an image: upload one into the inpaint canvas")
        mask = uploaded_mask(mask_upload, background.size) or painted
        if mask is None:
            raise InputError("inpaint needs a mask: paint over the area to repaint, or upload a mask")
        return background, mask
    if mode == "outpaint":
        if not isinstance(outpaint_image, Image.Image):
            raise InputError("outpaint needs an image: upload one first")
        return outpaint_image, None
    if not isinstance(image, Image.Image):
        raise InputError("img2img needs an init image: upload one first")
    return image, None
