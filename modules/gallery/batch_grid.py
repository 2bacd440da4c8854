"""The grid of a batch (A1111's ``return_grid`` / ``grid_save``): every image of a job on one sheet, shown
first in the result gallery and saved to ``outputs/<tab>-grids/YYYY-MM-DD/NNNNN.png`` with the first
image's infotext.

Rows as A1111 lays them out by default (``n_rows`` -1): about the square root of the count, lowered until
the images fill every row. Cells take the largest image's size; smaller images sit in their cell's top left.
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from PIL import Image


def grid_rows(count: int) -> int:
    """How many rows a grid of ``count`` images has."""
    if count <= 1:
        return 1
    rows = max(1, round(math.sqrt(count)))
    while count % rows:
        rows -= 1
    return rows


def make_grid(images: Sequence["Image.Image"]) -> "Image.Image":
    """One image with ``images`` in rows (see :func:`grid_rows`); needs at least one image."""
    from PIL import Image

    if not images:
        raise ValueError("a grid needs at least one image")
    rows = grid_rows(len(images))
    cols = math.ceil(len(images) / rows)
    width, height = max(im.width for im in images), max(im.height for im in images)
    sheet = Image.new("RGB", (cols * width, rows * height), "black")
    for index, image in enumerate(images):
        sheet.paste(image.convert("RGB"), ((index % cols) * width, (index // cols) * height))
    return sheet


def wants_grid(count: int, *, return_grid: bool, grid_save: bool) -> bool:
    """A grid is made for a batch of two or more images when it is shown or saved."""
    return count >= 2 and (return_grid or grid_save)


def save_grid(grid: "Image.Image", folder: Path, infotext: str, when: datetime | None = None) -> Path:
    """Save ``grid`` as ``folder/YYYY-MM-DD/NNNNN.png`` with ``infotext`` (atomic, as every output)."""
    from modules.images.saving import save_numbered_png

    day = Path(folder) / (when or datetime.now()).strftime("%Y-%m-%d")
    return save_numbered_png(grid, folder=day, texts={"parameters": infotext})
