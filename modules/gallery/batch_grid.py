"""The grid of a batch (A1111's ``return_grid`` / ``grid_save``): every image of a job on one sheet, shown
first in the result gallery and saved to ``outputs/<tab>-grids/YYYY-MM-DD/NNNNN.png`` with the first
image's infotext.

The sheet is :mod:`modules.images.grid`'s (the scripts' grids use it too): rows as A1111 lays a batch out by
default (``n_rows`` -1: the rounded square root of the count), cells of the largest image's size.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from PIL import Image


def make_grid(images: Sequence["Image.Image"]) -> "Image.Image":
    """One image with ``images`` in A1111's rows for a batch (:func:`modules.images.grid.grid_rows`); needs at
    least one image."""
    from modules.images.grid import grid_rows, image_grid

    return image_grid(images, grid_rows(len(images)))


def wants_grid(count: int, *, return_grid: bool, grid_save: bool) -> bool:
    """A grid is made for a batch of two or more images when it is shown or saved."""
    return count >= 2 and (return_grid or grid_save)


def save_grid(grid: "Image.Image", folder: Path, infotext: str, when: datetime | None = None) -> Path:
    """Save ``grid`` as ``folder/YYYY-MM-DD/NNNNN.png`` with ``infotext`` (atomic, as every output)."""
    from modules.images.saving import save_numbered_png

    day = Path(folder) / (when or datetime.now()).strftime("%Y-%m-%d")
    return save_numbered_png(grid, folder=day, texts={"parameters": infotext})
