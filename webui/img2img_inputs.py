"""From the img2img tab's image widgets to the images an :class:`Img2ImgRequest` carries.

* img2img: the uploaded image;
* sketch: the image with the colour strokes drawn on it (the strokes become part of the init image);
* inpaint: the editor's background is the init image, every painted stroke (any colour, any layer)
  is the mask; an uploaded mask (white = repaint) is used instead when given;
* inpaint sketch: the image with its colour strokes is the init image, the strokes are the mask;
* outpaint: the uploaded image and the pixels to add on each side.

Also "Resize by" (a scale of the init image's size) and the image a "copy to" button takes from a mode.
"""

from __future__ import annotations

from typing import Any

from PIL import Image, ImageChops

MODES = ("img2img", "sketch", "inpaint", "inpaint_sketch", "outpaint")


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


def sketch_composite(value: Any) -> Image.Image | None:
    """The editor's background with every stroke layer drawn over it (RGB), or None without an image.

    Computed here from the background and the layers (not taken from the client's composite), so what
    the strokes look like is what the init image gets."""
    background, _ = editor_parts(value)
    if background is None:
        return None
    canvas = background.convert("RGBA")
    for layer in value.get("layers") or []:
        if not isinstance(layer, Image.Image):
            continue
        layer = layer.convert("RGBA")
        if layer.size != canvas.size:
            layer = layer.resize(canvas.size, Image.Resampling.NEAREST)
        canvas.alpha_composite(layer)
    return canvas


def scaled_size(image: Image.Image, scale: float) -> tuple[int, int]:
    """A1111's "Resize by": the image's size times ``scale``, down to a multiple of 8 (8 at least)."""
    if not scale or scale <= 0:
        raise InputError("Resize by needs a scale above 0")
    return max(8, int(image.width * scale) // 8 * 8), max(8, int(image.height * scale) // 8 * 8)


def mode_image(mode: str, image: Any, editor: Any, sketch: Any, inpaint_sketch: Any,
               outpaint_image: Any) -> Image.Image | None:
    """The picture a mode holds (what "copy image to" takes): a canvas mode's composite with its strokes
    for the sketch modes, its plain background for inpaint (the mask is not copied)."""
    if mode == "sketch":
        return sketch_composite(sketch)
    if mode == "inpaint_sketch":
        return sketch_composite(inpaint_sketch)
    if mode == "inpaint":
        return editor_parts(editor)[0]
    if mode == "outpaint":
        return outpaint_image if isinstance(outpaint_image, Image.Image) else None
    return image if isinstance(image, Image.Image) else None


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


def request_images(mode: str, image: Any, editor: Any, mask_upload: Any, outpaint_image: Any,
                   sketch: Any = None, inpaint_sketch: Any = None) -> tuple[Image.Image, Image.Image | None]:
    """(init image, mask or None) for ``mode``; InputError with what is missing."""
    if mode == "sketch":
        drawn = sketch_composite(sketch)
        if drawn is None:
            raise InputError("sketch needs an image: upload one into the sketch canvas, then draw on it")
        return drawn, None
    if mode == "inpaint_sketch":
        drawn = sketch_composite(inpaint_sketch)
        strokes = editor_parts(inpaint_sketch)[1]
        if drawn is None:
            raise InputError("inpaint sketch needs an image: upload one into the inpaint sketch canvas")
        if strokes is None:
            raise InputError("inpaint sketch needs strokes: draw in colour over the area to repaint")
        return drawn, strokes
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
