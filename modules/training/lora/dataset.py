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


def square(image: Image.Image, size: int) -> Image.Image:
    """Centre crop to a square, then resize to ``size`` (Lanczos)."""
    image = ImageOps.exif_transpose(image).convert("RGB")
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    return image.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.LANCZOS)


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
                picture = square(opened, size)
        except (UnidentifiedImageError, OSError) as exc:
            raise DatasetError(f"{path.name} is not a readable image ({exc.__class__.__name__})") from None
        array = np.asarray(picture, dtype=np.float32) / 127.5 - 1.0
        images.append(TrainingImage(path, caption_for(path, default_caption),
                                    torch.from_numpy(array).permute(2, 0, 1).contiguous()))
    return images
