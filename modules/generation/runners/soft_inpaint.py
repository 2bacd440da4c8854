"""Soft inpainting: the result is blended into the original across a feathered band at the mask's edge.

A1111's plain overlay puts the original back wherever the (blurred) mask is below one half and the result
everywhere else, which can leave a visible seam. With ``soft_inpainting`` the overlay's mask is the
inpaint mask feathered by ``softness`` pixels (a Gaussian, cut off at 2.5 sigma as OpenCV sizes the
kernel), raised to ``1 + 2 * preservation`` so that the band keeps more of the original as preservation
grows. Inside the mask the result stays; beyond the band the output pixel **is** the input pixel.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image


def feather(mask: Image.Image, softness: int) -> np.ndarray:
    """``mask`` (L) blurred by a Gaussian of sigma ``softness`` in x and y, as 0..1 floats."""
    import cv2

    array = np.asarray(mask.convert("L"), dtype=np.float32) / 255.0
    if softness > 0:
        size = 2 * int(2.5 * softness + 0.5) + 1
        array = cv2.GaussianBlur(array, (size, size), softness, borderType=cv2.BORDER_REPLICATE)
    return np.clip(array, 0.0, 1.0)


def soft_overlay_mask(mask: Image.Image, softness: int, preservation: float) -> Image.Image:
    """The overlay mask (L, 255 = the result, 0 = the original) for soft inpainting."""
    weight = feather(mask, softness) ** (1.0 + 2.0 * preservation)
    weight[weight < 1.0 / 512] = 0.0  # the Gaussian's far tail rounds to the original, not to 1/255 of the result
    return Image.fromarray(np.round(weight * 255.0).astype(np.uint8))


def soft_infotext(req: Any) -> dict[str, Any]:
    """The infotext keys soft inpainting adds."""
    return {"Soft inpainting enabled": True, "Soft inpainting softness": req.soft_inpainting_softness,
            "Soft inpainting preservation strength": req.soft_inpainting_preservation}
