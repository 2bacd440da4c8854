"""Images a user uploads for training, copied into ``<data>/training/datasets/<name>/``.

Only the uploaded files are read (paths Gradio hands over for this upload, :mod:`webui.input_files`
decides which those are); every file is opened as an image and saved again as PNG, so what lands in the
folder is an image whatever the upload held. A ``.txt`` upload with the same stem is kept as its caption.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

from PIL import Image, ImageOps, UnidentifiedImageError

from modules.folder_access import IMAGE_SUFFIXES

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")


class UploadError(ValueError):
    """Uploaded files that cannot be used (message for the user)."""


def dataset_dir(data_dir: Path, name: str) -> Path:
    name = (name or "").strip()
    if not _NAME.match(name) or name in (".", ".."):
        raise UploadError("dataset name: letters, digits, '_', '.', '-' only (at most 80), starting with a letter "
                          "or digit")
    return data_dir / "training" / "datasets" / name


def save_uploads(data_dir: Path, name: str, files: Sequence[Path]) -> tuple[Path, int]:
    """Copy the uploaded images (and same-stem ``.txt`` captions) into the dataset ``name``; (folder, images)."""
    folder = dataset_dir(data_dir, name)
    images = [Path(f) for f in files if Path(f).suffix.lower() in IMAGE_SUFFIXES]
    captions = {Path(f).stem: Path(f) for f in files if Path(f).suffix.lower() == ".txt"}
    if not images:
        raise UploadError("no images among the uploaded files (png, jpg, webp...)")
    folder.mkdir(parents=True, exist_ok=True)
    for index, path in enumerate(images):
        try:
            with Image.open(path) as opened:
                picture = ImageOps.exif_transpose(opened).convert("RGB")
        except (UnidentifiedImageError, OSError):
            raise UploadError(f"{path.name} is not a readable image") from None
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", path.stem)[:60] or f"image{index}"
        picture.save(folder / f"{stem}.png")
        caption = captions.get(path.stem)
        if caption is not None:
            (folder / f"{stem}.txt").write_text(caption.read_text(encoding="utf-8", errors="replace").strip(),
                                                encoding="utf-8")
    return folder, len(images)
