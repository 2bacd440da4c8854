"""Saving generated images the A1111 way: ``outdir/YYYY-MM-DD/NNNNN-SEED.png`` with infotext.

Sequence numbers follow A1111's ``get_next_sequence_number`` (the first ``-``-separated part of
each file name, extension removed, parsed as an int; next = max + 1, starting at 0).

Concurrency: a sequence number is reserved by creating ``NNNNN.tmp`` with ``O_CREAT | O_EXCL``
(atomic on local file systems, across threads and processes), then checked against a fresh scan.
The image is written into that reserved file and ``os.replace``-d onto its final name, so a
complete file appears atomically and two savers never share a number. No in-process lock is
needed, so the module holds no shared state.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Final

from PIL import Image

from modules.images.codec import exif_with_infotext, png_info, read_infotext

__all__ = ["ImageSaveError", "get_next_sequence_number", "read_infotext", "save_generated_image"]

_FORMATS: Final[dict[str, str]] = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP"}
_MAX_ATTEMPTS: Final[int] = 10_000


class ImageSaveError(OSError):
    """An image could not be saved (unsupported format, no free sequence number, ...)."""


def _sequence_number(filename: str, prefix: str = "") -> int | None:
    """A1111's reading of a file name's sequence number, or None."""
    if not filename.startswith(prefix):
        return None
    first = os.path.splitext(filename[len(prefix):])[0].split("-")[0]
    try:
        return int(first)
    except ValueError:
        return None


def get_next_sequence_number(path: Path | str, basename: str = "") -> int:
    """Next sequence number for ``path`` (A1111 semantics; 0 for an empty or missing folder)."""
    prefix = f"{basename}-" if basename else ""
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return 0
    result = -1
    for name in names:
        number = _sequence_number(name, prefix)
        if number is not None:
            result = max(result, number)
    return result + 1


def _taken_by_other(folder: Path, number: int, own_name: str) -> bool:
    return any(name != own_name and _sequence_number(name) == number for name in os.listdir(folder))


def _reserve(folder: Path) -> tuple[int, Path, int]:
    """Reserve the next free sequence number: returns (number, reservation path, fd)."""
    number = get_next_sequence_number(folder)
    for _ in range(_MAX_ATTEMPTS):
        reservation = folder / f"{number:05}.tmp"
        try:
            fd = os.open(reservation, os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_BINARY", 0), 0o644)
        except FileExistsError:
            number += 1
            continue
        if _taken_by_other(folder, number, reservation.name):
            os.close(fd)
            reservation.unlink(missing_ok=True)
            number = max(number + 1, get_next_sequence_number(folder))
            continue
        return number, reservation, fd
    raise ImageSaveError(f"Could not find a free file number in {folder}")


def _save_kwargs(image: Image.Image, fmt: str, infotext: str, jpeg_quality: int) -> tuple[Image.Image, dict]:
    if fmt == "PNG":
        return image, {"pnginfo": png_info(infotext)}
    kwargs: dict = {"quality": jpeg_quality}
    if infotext:
        kwargs["exif"] = exif_with_infotext(infotext)
    if fmt == "JPEG" and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    return image, kwargs


def save_generated_image(
    image: Image.Image,
    *,
    outdir: Path,
    seed: int,
    infotext: str,
    when: datetime | None = None,
    extension: str = "png",
    jpeg_quality: int = 80,
) -> Path:
    """Save ``image`` as ``outdir/YYYY-MM-DD/NNNNN-SEED.<ext>`` with its infotext; return the path.

    PNG stores the infotext in a ``parameters`` text chunk; JPEG/WebP in EXIF ``UserComment``.
    The write is atomic and safe under concurrent calls from threads and processes.
    """
    ext = extension.lower().lstrip(".")
    fmt = _FORMATS.get(ext)
    if fmt is None:
        raise ImageSaveError(f"Unsupported image format {extension!r}; use one of: {', '.join(_FORMATS)}")
    folder = Path(outdir) / (when or datetime.now()).strftime("%Y-%m-%d")
    folder.mkdir(parents=True, exist_ok=True)
    to_save, kwargs = _save_kwargs(image, fmt, infotext, jpeg_quality)

    number, reservation, fd = _reserve(folder)
    final = folder / f"{number:05}-{seed}.{ext}"
    try:
        with os.fdopen(fd, "wb") as handle:
            to_save.save(handle, format=fmt, **kwargs)
        os.replace(reservation, final)
    except BaseException:
        reservation.unlink(missing_ok=True)
        raise
    return final


def save_numbered_png(image: Image.Image, *, folder: Path, texts: dict[str, str]) -> Path:
    """Save ``image`` as ``folder/NNNNN.png`` (A1111's Extras layout) with ``texts`` as PNG text chunks;
    atomic and safe under concurrent calls, like :func:`save_generated_image`."""
    from PIL import PngImagePlugin

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta = PngImagePlugin.PngInfo()
    for key, value in texts.items():
        if value:
            meta.add_text(key, value)
    number, reservation, fd = _reserve(folder)
    final = folder / f"{number:05}.png"
    try:
        with os.fdopen(fd, "wb") as handle:
            image.save(handle, format="PNG", pnginfo=meta)
        os.replace(reservation, final)
    except BaseException:
        reservation.unlink(missing_ok=True)
        raise
    return final
