"""Grid images: cells side by side, and labelled annotations (column titles, a row gutter, margins).

Used by the grid scripts (X/Y/Z plot, Prompt matrix). The layout follows A1111's grids:

* :func:`image_grid` puts images in ``rows`` rows, left to right, each in a slot of the largest cell's
  size (black behind a smaller one);
* :func:`annotate_grid` adds column labels above the columns and row labels in a left gutter 3/4 of a
  cell wide (each only when some label has text), and ``margin`` pixels between cells. The font size is
  ``(cell width + cell height) // 25``, shrunk until a line fits; long labels wrap at words. An inactive
  label (Prompt matrix: a part that is off) is grey and struck through.

The font is DejaVu Sans when installed, else the one Pillow ships (``ImageFont.load_default(size)``), else
Pillow's bitmap font.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Sequence

from PIL import Image, ImageDraw, ImageFont

TEXT_ACTIVE = (0, 0, 0)
TEXT_INACTIVE = (153, 153, 153)
BACKGROUND = (255, 255, 255)
DEJAVU = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


@dataclass
class GridAnnotation:
    """One label line; ``active=False`` draws it grey and struck through."""

    text: str = ""
    active: bool = True
    size: tuple[int, int] = field(default=(0, 0), compare=False)


def labels(texts: Sequence[str]) -> list[list[GridAnnotation]]:
    """One single-line annotation per column or row."""
    return [[GridAnnotation(str(text))] for text in texts]


@lru_cache(maxsize=64)
def get_font(size: int) -> Any:
    size = max(1, int(size))
    try:
        return ImageFont.truetype(DEJAVU, size)  # hinted: clearer at the small sizes of small cells
    except OSError:
        pass
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType
        return ImageFont.load_default()


def grid_rows(count: int) -> int:
    """A1111's rows for a batch grid: round(sqrt(count)), at most ``count``."""
    return max(1, min(count, round(math.sqrt(count)))) if count else 1


def image_grid(images: Sequence[Image.Image], rows: int) -> Image.Image:
    """``images`` in ``rows`` rows (as many columns as needed), each in a slot of the largest image's size."""
    if not images:
        raise ValueError("a grid needs at least one image")
    rows = max(1, min(rows, len(images)))
    cols = math.ceil(len(images) / rows)
    cell_w = max(im.width for im in images)
    cell_h = max(im.height for im in images)
    grid = Image.new("RGB", (cols * cell_w, rows * cell_h), (0, 0, 0))
    for index, image in enumerate(images):
        grid.paste(image.convert("RGB"), (index % cols * cell_w, index // cols * cell_h))
    return grid


@dataclass
class AnnotationLayout:
    """Where labels go around a grid of ``cols`` x ``rows`` cells of ``cell_w`` x ``cell_h``."""

    cell_w: int
    cell_h: int
    cols: int
    rows: int
    margin: int
    font_size: int
    spacing: int
    pad_left: int
    pad_top: int
    hor: list[list[GridAnnotation]]
    ver: list[list[GridAnnotation]]

    @property
    def size(self) -> tuple[int, int]:
        return (self.cols * self.cell_w + self.pad_left + self.margin * (self.cols - 1),
                self.rows * self.cell_h + self.pad_top + self.margin * (self.rows - 1))


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: Any, width: int) -> list[str]:
    lines = [""]
    for word in text.split():
        candidate = f"{lines[-1]} {word}".strip()
        if not lines[-1] or draw.textlength(candidate, font=font) <= width:
            lines[-1] = candidate
        else:
            lines.append(word)
    return lines


def _block_height(lines: list[GridAnnotation], spacing: int) -> int:
    return sum(line.size[1] for line in lines) + spacing * max(0, len(lines) - 1)


def layout_annotations(cell_w: int, cell_h: int, hor: Sequence[Sequence[GridAnnotation]],
                       ver: Sequence[Sequence[GridAnnotation]], margin: int = 0) -> AnnotationLayout:
    """Measure the labels (wrapped to their room) and the padding they need; draws nothing."""
    font_size = max(1, (cell_w + cell_h) // 25)
    spacing = font_size // 2
    font = get_font(font_size)
    has_ver = any(line.text for lines in ver for line in lines)
    pad_left = cell_w * 3 // 4 if has_ver else 0
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    wrapped: list[list[list[GridAnnotation]]] = [[], []]
    for which, (groups, width) in enumerate(((hor, cell_w), (ver, pad_left))):
        for lines in groups:
            out: list[GridAnnotation] = []
            for line in lines:
                for text in _wrap(probe, line.text, font, max(1, width)):
                    box = probe.multiline_textbbox((0, 0), text, font=font) if text else (0, 0, 0, 0)
                    out.append(GridAnnotation(text, line.active, (box[2] - box[0], box[3] - box[1])))
            wrapped[which].append(out)
    heights = [_block_height(lines, spacing) for lines in wrapped[0]]
    pad_top = max(heights) + spacing * 2 if any(heights) else 0
    return AnnotationLayout(cell_w, cell_h, len(hor), len(ver), max(0, margin), font_size, spacing, pad_left,
                            pad_top, wrapped[0], wrapped[1])


def _draw_block(draw: ImageDraw.ImageDraw, centre_x: float, top: float, lines: list[GridAnnotation],
                layout: AnnotationLayout, width: int) -> None:
    y = top
    for line in lines:
        size = layout.font_size
        font = get_font(size)
        while size > 1 and line.text and draw.textlength(line.text, font=font) > width:
            size -= 1
            font = get_font(size)
        if line.text:
            colour = TEXT_ACTIVE if line.active else TEXT_INACTIVE
            draw.text((centre_x, y + line.size[1] / 2), line.text, font=font, fill=colour, anchor="mm")
            if not line.active:
                half = draw.textlength(line.text, font=font) / 2
                mid = y + line.size[1] / 2
                draw.line((centre_x - half, mid, centre_x + half, mid), fill=colour, width=max(1, size // 10))
        y += line.size[1] + layout.spacing


def annotate_grid(grid: Image.Image, cell_w: int, cell_h: int, hor: Sequence[Sequence[GridAnnotation]],
                  ver: Sequence[Sequence[GridAnnotation]], margin: int = 0) -> Image.Image:
    """``grid`` (``len(hor)`` columns x ``len(ver)`` rows of ``cell_w`` x ``cell_h``) with its labels and margins."""
    layout = layout_annotations(cell_w, cell_h, hor, ver, margin)
    cols, rows = layout.cols, layout.rows
    if grid.width < cols * cell_w or grid.height < rows * cell_h:
        raise ValueError(f"a {grid.width}x{grid.height} grid has no room for {cols}x{rows} cells of {cell_w}x{cell_h}")
    out = Image.new("RGB", layout.size, BACKGROUND)
    for row in range(rows):
        for col in range(cols):
            cell = grid.crop((col * cell_w, row * cell_h, (col + 1) * cell_w, (row + 1) * cell_h))
            out.paste(cell, (layout.pad_left + (cell_w + layout.margin) * col,
                             layout.pad_top + (cell_h + layout.margin) * row))
    draw = ImageDraw.Draw(out)
    for col, lines in enumerate(layout.hor):
        centre = layout.pad_left + (cell_w + layout.margin) * col + cell_w / 2
        _draw_block(draw, centre, layout.pad_top / 2 - _block_height(lines, layout.spacing) / 2, lines, layout,
                    cell_w)
    for row, lines in enumerate(layout.ver):
        top = layout.pad_top + (cell_h + layout.margin) * row + cell_h / 2 - _block_height(lines, layout.spacing) / 2
        _draw_block(draw, layout.pad_left / 2, top, lines, layout, layout.pad_left)
    return out


def prompt_matrix_annotations(parts: Sequence[str]) -> tuple[list[list[GridAnnotation]], list[list[GridAnnotation]]]:
    """A1111's prompt-matrix labels: the optional parts split between columns (first half) and rows; each
    column/row lists its parts, active (black) when that part is in its prompts, else grey and struck through."""
    boundary = math.ceil(len(parts) / 2)
    across, down = list(parts[:boundary]), list(parts[boundary:])

    def block(names: list[str]) -> list[list[GridAnnotation]]:
        return [[GridAnnotation(name, active=bool(pos & (1 << i))) for i, name in enumerate(names)]
                for pos in range(1 << len(names))]

    return block(across), block(down)
