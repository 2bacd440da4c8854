"""Dataset preparation (issue 27): the crop keeps an off-centre subject (salient fallback), captions from a
template with the instance token and .txt files, resize to the model's size, the preview grid and the
prepared copy; the Dataset sub-tab's Preview and Prepare."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from modules.training.dataset_prep import (PrepError, caption, face_box, prepare, preview_grid, salient_centre,
                                           square_crop, subject_centre, write_prepared)


def _scene(path: Path, size: tuple[int, int], box: tuple[int, int, int, int], colour=(220, 30, 30)) -> Path:
    image = Image.new("RGB", size, (120, 170, 210))
    draw = ImageDraw.Draw(image)
    draw.ellipse(box, fill=colour, outline=(20, 20, 20), width=3)
    image.save(path)
    return path


def _red_fraction(image: Image.Image) -> float:
    pixels = np.asarray(image, dtype=np.int16)
    red = (pixels[..., 0] > 180) & (pixels[..., 1] < 80) & (pixels[..., 2] < 80)
    return float(red.mean())


def test_salient_fallback_keeps_an_off_centre_subject(tmp_path: Path) -> None:
    wide = _scene(tmp_path / "wide.png", (300, 100), (230, 20, 290, 80))      # subject at the right edge
    tall = _scene(tmp_path / "tall.png", (90, 270), (10, 15, 80, 85))         # subject at the top
    for path in (wide, tall):
        with Image.open(path) as image:
            centre, method = subject_centre(image.convert("RGB"), faces=False)
            smart = square_crop(image.convert("RGB"), centre, 64)
            side = min(image.size)
            middle = image.crop(((image.width - side) // 2, (image.height - side) // 2,
                                 (image.width + side) // 2, (image.height + side) // 2)).resize((64, 64))
        assert method == "subject"
        assert smart.size == (64, 64)
        assert _red_fraction(middle) < 0.01 < _red_fraction(smart)  # a centre crop loses it, the smart crop keeps it
    with Image.open(wide) as image:
        cx, cy = salient_centre(image.convert("RGB"))
    assert 240 < cx < 280 and 35 < cy < 65


def test_featureless_image_is_centred_and_no_face_in_a_blank_picture() -> None:
    blank = Image.new("RGB", (120, 80), (90, 90, 90))
    assert subject_centre(blank) == ((60.0, 40.0), "centre")
    assert face_box(blank) is None


def test_captions_from_template_token_and_files(tmp_path: Path) -> None:
    image = _scene(tmp_path / "a.png", (64, 64), (10, 10, 50, 50))
    assert caption(image, "a photo of {token}, {filewords}", "sks shape") == "a photo of sks shape"
    (tmp_path / "a.txt").write_text("red circle, blue sky\n")
    assert caption(image, "a photo of {token}, {filewords}", "sks shape") == "a photo of sks shape, red circle, blue sky"
    assert caption(image, "", "sks") == "red circle, blue sky"


def test_prepare_writes_a_copy_and_a_preview_grid(tmp_path: Path) -> None:
    files = [_scene(tmp_path / f"{i}.png", (200 + 40 * i, 120), (150, 30, 190, 70)) for i in range(3)]
    (tmp_path / "1.txt").write_text("on blue")
    items = prepare([*files, tmp_path / "1.txt"], 96, template="{token}, {filewords}", token="zwx ball", faces=False)
    assert [i.image.size for i in items] == [(96, 96)] * 3
    assert [i.caption for i in items] == ["zwx ball", "zwx ball, on blue", "zwx ball"]
    assert all(_red_fraction(i.image) > 0.02 for i in items)
    out = write_prepared(items, tmp_path / "prepared")
    assert sorted(p.name for p in out.iterdir()) == ["0.png", "0.txt", "1.png", "1.txt", "2.png", "2.txt"]
    assert (out / "1.txt").read_text() == "zwx ball, on blue"
    grid = preview_grid(items, columns=2, thumb=64)
    assert grid.size == (128, 2 * (64 + 28))
    with pytest.raises(PrepError, match="no images"):
        prepare([tmp_path / "1.txt"], 96)
    with pytest.raises(PrepError, match="instance token"):
        prepare(files, 96, template="a {token}", token=" ")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(PrepError, match="broken.png"):
        prepare([tmp_path / "broken.png"], 96)


def test_dataset_sub_tab_preview_and_prepare(tmp_path: Path) -> None:
    import gradio as gr

    from types import SimpleNamespace

    from modules.paths import resolve_paths
    from webui.train_tab import build_train_tab

    paths = resolve_paths(tmp_path / "data")
    ctx = SimpleNamespace(paths=paths, flags=SimpleNamespace(allowed_dirs=()), models=SimpleNamespace(active=None),
                          catalog=SimpleNamespace(list=lambda: []))  # the Dataset sub-tab needs no model
    source = ctx.paths.data_dir / "raw"
    source.mkdir(parents=True)
    for i in range(2):
        _scene(source / f"{i}.png", (160, 100), (110, 30, 150, 70))
    with gr.Blocks():
        tab = build_train_tab(ctx)
    grid, status = tab.prepare_preview(None, "raw", 64, "{token}", "sks", True)
    assert grid is not None and "2 image(s)" in status and "subject: 2" in status
    status, folder = tab.prepare_write(None, "raw", 64, "{token}", "sks", True, "prepped")
    assert folder == "training/datasets/prepped" and "2 image(s) prepared" in status
    assert (ctx.paths.data_dir / folder / "0.txt").read_text() == "sks"
    _, status = tab.prepare_preview(None, "/etc", 64, "{token}", "sks", True)
    assert "outside the folders" in status
