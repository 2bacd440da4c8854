"""Grid images (modules/images/grid.py): cell placement, label room (column band, 3/4-cell row gutter),
margins, wrapping and the prompt-matrix labels."""

from __future__ import annotations

from PIL import Image

from modules.images.grid import (GridAnnotation, annotate_grid, grid_rows, image_grid, labels, layout_annotations,
                                 prompt_matrix_annotations)


def _solid(colour: tuple[int, int, int], size: tuple[int, int] = (64, 64)) -> Image.Image:
    return Image.new("RGB", size, colour)


def test_image_grid_places_cells_row_by_row_in_the_largest_slot() -> None:
    cells = [_solid((10 * i, 0, 0)) for i in range(5)] + [_solid((0, 200, 0), (32, 32))]
    grid = image_grid(cells, rows=2)
    assert grid.size == (3 * 64, 2 * 64)
    assert grid.getpixel((64 + 5, 5)) == (10, 0, 0) and grid.getpixel((5, 64 + 5)) == (30, 0, 0)
    assert grid.getpixel((2 * 64 + 5, 64 + 5)) == (0, 200, 0)
    assert grid.getpixel((2 * 64 + 40, 64 + 40)) == (0, 0, 0)  # a smaller cell leaves black around it
    assert [grid_rows(n) for n in (1, 2, 3, 4, 6, 9)] == [1, 1, 2, 2, 2, 3]


def test_annotations_make_room_for_labels_and_margins() -> None:
    cells = [_solid((50 * i, 100, 100)) for i in range(6)]
    grid = image_grid(cells, rows=2)
    hor, ver = labels(["Steps: 10", "Steps: 20", "Steps: 30"]), labels(["CFG Scale: 5.0", "CFG Scale: 7.0"])
    layout = layout_annotations(64, 64, hor, ver, margin=4)
    out = annotate_grid(grid, 64, 64, hor, ver, margin=4)
    assert layout.font_size == (64 + 64) // 25 and layout.pad_left == 48 and layout.pad_top > layout.font_size
    assert out.size == layout.size == (48 + 3 * 64 + 2 * 4, layout.pad_top + 2 * 64 + 4)
    # each cell sits after the gutter, the band and the margins
    assert out.getpixel((48 + 64 + 4 + 10, layout.pad_top + 64 + 4 + 10)) == (200, 100, 100)
    assert out.getpixel((48 + 64 + 1, layout.pad_top + 10)) == (255, 255, 255)  # a margin
    band = out.crop((48, 0, out.width, layout.pad_top)).convert("L")
    gutter = out.crop((0, layout.pad_top, 48, out.height)).convert("L")
    assert band.getextrema()[0] < 100 and gutter.getextrema()[0] < 100  # text drawn in both


def test_no_labels_no_room_and_long_labels_wrap() -> None:
    grid = image_grid([_solid((1, 2, 3))] * 2, rows=1)
    assert annotate_grid(grid, 64, 64, labels(["", ""]), labels([""])).size == (128, 64)
    assert annotate_grid(grid, 64, 64, labels(["a", "b"]), labels([""])).size[0] == 128  # no gutter
    layout = layout_annotations(64, 64, labels(["a very long label that cannot fit", "b"]), labels([""]))
    assert len(layout.hor[0]) > 1 and len(layout.hor[1]) == 1
    short = layout_annotations(64, 64, labels(["a", "b"]), labels([""]))
    assert layout.pad_top > short.pad_top


def test_prompt_matrix_labels_mark_the_parts_each_column_and_row_has() -> None:
    across, down = prompt_matrix_annotations(["red", "in a hat", "at night"])
    assert len(across) == 4 and len(down) == 2
    assert [[line.active for line in column] for column in across] == [[False, False], [True, False],
                                                                       [False, True], [True, True]]
    assert [line.text for line in across[3]] == ["red", "in a hat"] and down[1] == [GridAnnotation("at night")]
    grid = image_grid([_solid((0, 0, 0))] * 8, rows=2)
    out = annotate_grid(grid, 64, 64, across, down)
    assert out.size == layout_annotations(64, 64, across, down).size
    colours = {colour for _, colour in out.crop((0, 0, out.width, 20)).getcolors(maxcolors=1 << 16)}
    assert (153, 153, 153) in colours  # the inactive parts are drawn grey
