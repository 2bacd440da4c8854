"""The history browser over outputs/: search by prompt, filter by model, folder and date, thumbnails,
and delete to outputs/.trash/ (never outside outputs/)."""

from __future__ import annotations

import os
import time
from datetime import date
from pathlib import Path

import pytest
from PIL import Image

from modules.gallery.history import HistoryError, HistoryIndex
from modules.gallery.thumbnails import thumbnail
from modules.images.codec import png_info


def _png(path: Path, prompt: str, model: str, seed: int, size: int = 32) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = f"{prompt}\nNegative prompt: ugly\nSteps: 4, Sampler: Euler a, Seed: {seed}, Size: {size}x{size}, Model: {model}"
    Image.new("RGB", (size, size), (seed % 255, 40, 90)).save(path, pnginfo=png_info(text))
    return path


@pytest.fixture
def outputs(tmp_path: Path) -> Path:
    root = tmp_path / "outputs"
    _png(root / "txt2img-images" / "2024-05-01" / "00000-1.png", "a red circle", "shapes", 1)
    _png(root / "txt2img-images" / "2024-05-02" / "00001-2.png", "a blue square", "shapes", 2)
    _png(root / "img2img-images" / "2024-06-10" / "00000-3.png", "a red square, detailed", "other-model", 3)
    Image.new("RGB", (8, 8)).save(root / "txt2img-images" / "no-info.png")
    (root / "txt2img-images" / "notes.txt").write_text("not an image")
    return root


def test_scan_reads_prompt_model_and_date(outputs: Path) -> None:
    entries = {e.relative: e for e in HistoryIndex(outputs).scan()}
    assert len(entries) == 4
    red = entries["txt2img-images/2024-05-01/00000-1.png"]
    assert (red.prompt, red.model, red.kind, red.day, red.seed) == ("a red circle", "shapes", "txt2img-images",
                                                                    date(2024, 5, 1), "1")
    assert entries["txt2img-images/no-info.png"].infotext == ""


def test_search_by_words_model_folder_and_dates(outputs: Path) -> None:
    index = HistoryIndex(outputs)
    names = lambda found: sorted(e.relative.rsplit("/", 1)[1] for e in found)  # noqa: E731
    assert names(index.search("red")) == ["00000-1.png", "00000-3.png"]
    assert names(index.search("RED square")) == ["00000-3.png"]
    assert names(index.search("", model="shapes")) == ["00000-1.png", "00001-2.png"]
    assert names(index.search("", kind="img2img-images")) == ["00000-3.png"]
    assert names(index.search("", date_from=date(2024, 5, 2), date_to=date(2024, 5, 31))) == ["00001-2.png"]
    assert names(index.search("other-model")) == ["00000-3.png"]  # any infotext text matches, not only the prompt
    assert index.models() == ["other-model", "shapes"]
    assert index.kinds() == ["img2img-images", "txt2img-images"]


def test_the_index_rereads_a_changed_file(outputs: Path) -> None:
    index = HistoryIndex(outputs)
    assert index.search("green") == []
    path = outputs / "txt2img-images" / "2024-05-01" / "00000-1.png"
    _png(path, "a green circle", "shapes", 1)
    later = time.time() + 5
    os.utime(path, (later, later))
    assert [e.relative for e in index.search("green")] == ["txt2img-images/2024-05-01/00000-1.png"]


def test_delete_moves_to_the_trash_and_hides_it(outputs: Path) -> None:
    index = HistoryIndex(outputs)
    rel = "txt2img-images/2024-05-01/00000-1.png"
    target = index.delete(rel)
    assert target == outputs / ".trash" / rel and target.is_file()
    assert not (outputs / rel).exists()
    assert rel not in {e.relative for e in index.scan()}
    _png(outputs / rel, "a red circle again", "shapes", 1)
    assert index.delete(rel).name == "00000-1-1.png"  # a second delete of the same name keeps both


def test_delete_refuses_paths_outside_outputs(outputs: Path, tmp_path: Path) -> None:
    outside = tmp_path / "precious.png"
    Image.new("RGB", (4, 4)).save(outside)
    index = HistoryIndex(outputs)
    for bad in ("../precious.png", str(outside), ".trash/../../precious.png"):
        with pytest.raises(HistoryError):
            index.delete(bad)
    assert outside.exists()
    with pytest.raises(HistoryError, match="no longer exists"):
        index.delete("txt2img-images/missing.png")


def test_thumbnails_are_small_cached_and_renewed_on_change(outputs: Path, tmp_path: Path) -> None:
    big = _png(outputs / "txt2img-images" / "2024-07-01" / "00000-9.png", "big", "shapes", 9, size=600)
    cache = tmp_path / "cache"
    thumb = thumbnail(big, cache)
    assert thumb.parent == cache / "thumbnails"
    with Image.open(thumb) as image:
        assert max(image.size) == 256
    assert thumbnail(big, cache) == thumb
    small = outputs / "txt2img-images" / "2024-05-01" / "00000-1.png"
    assert thumbnail(small, cache) == small  # already small: no copy
    _png(big, "big", "shapes", 10, size=500)
    later = time.time() + 5
    os.utime(big, (later, later))
    assert thumbnail(big, cache) != thumb
