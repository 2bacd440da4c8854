"""Small JPEG thumbnails for the history browser, cached under ``<cache dir>/thumbnails/``.

A thumbnail is named after the image's path, modification time and size, so an edited or replaced
image gets a new one; the browser never sends full-size files for a page of results.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

THUMB_SIZE = 256


def thumbnail(path: Path, cache_dir: Path, size: int = THUMB_SIZE) -> Path:
    """The cached thumbnail of ``path`` (made on first use); the image itself if it is already small."""
    stat = path.stat()
    key = hashlib.sha1(f"{path.resolve()}|{stat.st_mtime_ns}|{stat.st_size}|{size}".encode()).hexdigest()
    target = cache_dir / "thumbnails" / f"{key}.jpg"
    if target.exists():
        return target
    try:
        with Image.open(path) as image:
            if max(image.size) <= size:
                return path
            image = ImageOps.exif_transpose(image) or image
            image.thumbnail((size, size), Image.Resampling.LANCZOS)
            rgb = image.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError):
        return path  # let the browser show (or fail to show) the original
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".{os.getpid()}-{threading.get_ident()}.tmp")
    rgb.save(tmp, format="JPEG", quality=85)
    os.replace(tmp, target)
    return target
