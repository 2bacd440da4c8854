"""Dataset preparation for training: a square crop around the subject, resized to the model's size, with
captions, previewed as a grid and written as a prepared copy (``<data>/training/datasets/<name>/``).

The crop is centred on a detected face (OpenCV's frontal-face Haar cascade, shipped in
``opencv-python-headless`` 4.x as ``cv2.data.haarcascades``; where it is missing, as in 5.x, faces are
not looked for), else on the salient subject: the centroid of an edge-and-contrast map (gradient
magnitude plus the distance of each pixel's colour from the border's median colour, weighted by its
square so the strongest evidence leads). Captions: a same-stem ``.txt`` file (``{filewords}``) in a
template with the instance token (``{token}``), e.g. ``"a photo of {token}, {filewords}"``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageOps, UnidentifiedImageError

from modules.folder_access import IMAGE_SUFFIXES

DEFAULT_TEMPLATE = "a photo of {token}, {filewords}"


class PrepError(ValueError):
    """Images or options that cannot be prepared (message for the user)."""


@dataclass(frozen=True)
class PreparedImage:
    source: Path
    image: Image.Image
    caption: str
    method: str                      # "face" | "subject" | "centre"
    centre: tuple[float, float]      # the crop's centre in the source image (pixels)


@functools.lru_cache(maxsize=1)
def _face_cascade() -> Any:
    """The frontal-face cascade, or None when OpenCV or its data files are missing."""
    try:
        import cv2
    except ImportError:
        return None
    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    path = Path(folder or "") / "haarcascade_frontalface_default.xml"
    if not folder or not path.is_file():
        return None
    cascade = cv2.CascadeClassifier(str(path))
    return None if cascade.empty() else cascade


def face_detection_available() -> bool:
    return _face_cascade() is not None


def face_box(image: Image.Image) -> tuple[int, int, int, int] | None:
    """The largest detected face as (x, y, w, h), or None (none found, or no cascade)."""
    cascade = _face_cascade()
    if cascade is None:
        return None
    gray = np.asarray(image.convert("L"))
    minimum = max(24, min(gray.shape) // 10)
    faces = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(minimum, minimum))
    if len(faces) == 0:
        return None
    x, y, w, h = max(faces, key=lambda f: int(f[2]) * int(f[3]))
    return int(x), int(y), int(w), int(h)


def saliency_map(image: Image.Image, work: int = 128) -> np.ndarray:
    """Edge magnitude + colour contrast to the border, on a copy at most ``work`` pixels wide."""
    small = image.convert("RGB")
    scale = min(1.0, work / max(small.size))
    if scale < 1.0:
        small = small.resize((max(1, round(small.width * scale)), max(1, round(small.height * scale))),
                             Image.Resampling.BILINEAR)
    rgb = np.asarray(small, dtype=np.float32) / 255.0
    gray = rgb.mean(axis=2)
    gx = np.zeros_like(gray)
    gy = np.zeros_like(gray)
    gx[:, 1:-1] = gray[:, 2:] - gray[:, :-2]
    gy[1:-1, :] = gray[2:, :] - gray[:-2, :]
    edges = np.hypot(gx, gy)
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    background = np.median(border, axis=0)
    contrast = np.linalg.norm(rgb - background, axis=2)
    score = edges / (edges.max() + 1e-6) + contrast / (contrast.max() + 1e-6)
    return score ** 2


def salient_centre(image: Image.Image) -> tuple[float, float] | None:
    """The centroid of the saliency map in source pixels, or None for a featureless image."""
    score = saliency_map(image)
    total = float(score.sum())
    if total <= 1e-6:
        return None
    ys, xs = np.indices(score.shape)
    cx = float((xs * score).sum() / total + 0.5) * image.width / score.shape[1]
    cy = float((ys * score).sum() / total + 0.5) * image.height / score.shape[0]
    return cx, cy


def subject_centre(image: Image.Image, *, faces: bool = True) -> tuple[tuple[float, float], str]:
    box = face_box(image) if faces else None
    if box is not None:
        x, y, w, h = box
        return (x + w / 2, y + h / 2), "face"
    centre = salient_centre(image)
    if centre is not None:
        return centre, "subject"
    return (image.width / 2, image.height / 2), "centre"


def square_crop(image: Image.Image, centre: tuple[float, float], size: int) -> Image.Image:
    """The largest square around ``centre`` (kept inside the image), resized to ``size``."""
    side = min(image.size)
    left = int(round(min(max(centre[0] - side / 2, 0), image.width - side)))
    top = int(round(min(max(centre[1] - side / 2, 0), image.height - side)))
    return image.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.LANCZOS)


def caption(path: Path, template: str, token: str) -> str:
    """The template with ``{token}`` and ``{filewords}`` (the image's .txt caption) filled in, tidied."""
    text_file = path.with_suffix(".txt")
    filewords = ""
    if text_file.is_file():
        filewords = text_file.read_text(encoding="utf-8", errors="replace").strip()
    template = (template or "").strip() or "{filewords}"
    out = template.replace("{token}", token.strip()).replace("{filewords}", filewords)
    out = re.sub(r"\s*,(\s*,)+", ",", out)
    out = re.sub(r"\s+", " ", out).strip(" ,")
    return out or token.strip()


def prepare(files: Sequence[Path], size: int, *, template: str = DEFAULT_TEMPLATE, token: str = "sks",
            faces: bool = True) -> list[PreparedImage]:
    """Crop, resize and caption each image file (other files are skipped)."""
    if not 64 <= size <= 2048:
        raise PrepError("size: between 64 and 2048 pixels")
    images = [Path(f) for f in files if Path(f).suffix.lower() in IMAGE_SUFFIXES]
    if not images:
        raise PrepError("no images to prepare (png, jpg, webp...)")
    if "{token}" in (template or "") and not token.strip():
        raise PrepError("the caption template uses {token}: type the instance token (e.g. 'sks shape')")
    out = []
    for path in images:
        try:
            with Image.open(path) as opened:
                picture = ImageOps.exif_transpose(opened).convert("RGB")
        except (UnidentifiedImageError, OSError):
            raise PrepError(f"{path.name} is not a readable image") from None
        centre, method = subject_centre(picture, faces=faces)
        out.append(PreparedImage(path, square_crop(picture, centre, size), caption(path, template, token), method,
                                 centre))
    return out


def write_prepared(items: Sequence[PreparedImage], folder: Path) -> Path:
    """Write each prepared image as PNG with its caption beside it (``<stem>.txt``); returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    for index, item in enumerate(items):
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", item.source.stem)[:60] or f"image{index}"
        while stem in used:
            stem = f"{stem}_{index}"
        used.add(stem)
        item.image.save(folder / f"{stem}.png")
        (folder / f"{stem}.txt").write_text(item.caption, encoding="utf-8")
    return folder


def preview_grid(items: Sequence[PreparedImage], *, columns: int = 4, thumb: int = 160) -> Image.Image:
    """The prepared images as a grid with the crop method and caption under each."""
    columns = max(1, min(columns, len(items) or 1))
    rows = max(1, (len(items) + columns - 1) // columns)
    label = 28
    grid = Image.new("RGB", (columns * thumb, rows * (thumb + label)), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for index, item in enumerate(items):
        x, y = (index % columns) * thumb, (index // columns) * (thumb + label)
        grid.paste(item.image.resize((thumb, thumb), Image.Resampling.LANCZOS), (x, y))
        draw.text((x + 3, y + thumb + 2), item.method, fill=(180, 80, 10))
        text = item.caption if len(item.caption) <= thumb // 6 else item.caption[: thumb // 6 - 1] + "…"
        draw.text((x + 3, y + thumb + 14), text, fill=(40, 40, 40))
    return grid
