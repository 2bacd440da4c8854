"""Canny edge maps as ControlNet conditioning (white edges on black, 3 channels)."""

from __future__ import annotations

import cv2
import numpy as np
import torch
from PIL import Image


def canny_map(image: Image.Image, low: int = 100, high: int = 200) -> Image.Image:
    """Canny edges of an RGB image (OpenCV takes the strongest channel gradient), as an RGB image."""
    edges = cv2.Canny(np.ascontiguousarray(np.asarray(image.convert("RGB"))), low, high)
    return Image.fromarray(np.stack([edges] * 3, axis=-1))


def canny_tensor(images: torch.Tensor, low: int = 100, high: int = 200) -> torch.Tensor:
    """Edge maps (N, 3, H, W) in [0, 1] for uint8 renders (N, 3, H, W)."""
    maps = [
        cv2.Canny(np.ascontiguousarray(image.permute(1, 2, 0).numpy()), low, high) for image in images
    ]
    edges = torch.from_numpy(np.stack(maps)).float().div(255.0)
    return edges.unsqueeze(1).expand(-1, 3, -1, -1).contiguous()
