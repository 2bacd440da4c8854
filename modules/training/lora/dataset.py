"""A training folder's images and captions: centre-cropped to a square, resized, as tensors in [-1, 1]."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from modules.folder_access import image_files
from modules.training.lora.errors import DatasetError


@dataclass(frozen=True)
class TrainingImage:
    path: Path
    caption: str
    pixels: torch.Tensor  # (3, size, size) in [-1, 1]
    #: SDXL's micro-conditioning: the image's (height, width) before cropping, and the crop's (top, left)
    #: in the frame resized so that its shorter side is ``size`` (diffusers' SDXL training recipe)
    original_size: tuple[int, int] = (0, 0)
    crop_top_left: tuple[int, int] = (0, 0)


def square_crop(image: Image.Image, size: int) -> tuple[Image.Image, tuple[int, int], tuple[int, int]]:
    """Centre crop to a square, then resize to ``size`` (Lanczos); with the original (height, width) and
    the crop's (top, left) in the resized frame."""
    image = ImageOps.exif_transpose(image).convert("RGB")
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    scale = size / side
    cropped = image.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.LANCZOS)
    return cropped, (image.height, image.width), (round(top * scale), round(left * scale))


def square(image: Image.Image, size: int) -> Image.Image:
    """Centre crop to a square, then resize to ``size`` (Lanczos)."""
    return square_crop(image, size)[0]


def caption_for(path: Path, default: str) -> str:
    text = path.with_suffix(".txt")
    if text.is_file():
        caption = text.read_text(encoding="utf-8", errors="replace").strip()
        if caption:
            return caption
    return default


def load_dataset(folder: Path, roots: Sequence[Path], size: int, default_caption: str) -> list[TrainingImage]:
    files = image_files(folder, roots)
    if not files:
        raise DatasetError(f"no images in the training folder {folder.name!r} (png, jpg, webp...)")
    images: list[TrainingImage] = []
    for path in files:
        try:
            with Image.open(path) as opened:
                picture, original, crop = square_crop(opened, size)
        except (UnidentifiedImageError, OSError) as exc:
            raise DatasetError(f"{path.name} is not a readable image ({exc.__class__.__name__})") from None
        array = np.asarray(picture, dtype=np.float32) / 127.5 - 1.0
        images.append(TrainingImage(path, caption_for(path, default_caption),
                                    torch.from_numpy(array).permute(2, 0, 1).contiguous(), original, crop))
    return images
