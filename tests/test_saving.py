"""Tests for saving generated images to disk."""

from __future__ import annotations

import multiprocessing
import os
import threading
from datetime import datetime
from pathlib import Path

import pytest
from PIL import Image

from modules.images.saving import (
    ImageSaveError,
    get_next_sequence_number,
    read_infotext,
    save_generated_image,
)

WHEN = datetime(2024, 7, 27, 12, 30)
INFOTEXT = "a cat, ünïcode\nNegative prompt: dog\nSteps: 20, Sampler: Euler a, Seed: 123, Size: 16x16"


def _image(color: str = "red") -> Image.Image:
    return Image.new("RGB", (16, 16), color)


def test_naming_and_date_folder(tmp_path: Path) -> None:
    path = save_generated_image(_image(), outdir=tmp_path, seed=1234567890, infotext=INFOTEXT, when=WHEN)
    assert path == tmp_path / "2024-07-27" / "00000-1234567890.png"
    assert path.is_file()
    second = save_generated_image(_image(), outdir=tmp_path, seed=5, infotext=INFOTEXT, when=WHEN)
    assert second.name == "00001-5.png"
    assert sorted(os.listdir(path.parent)) == ["00000-1234567890.png", "00001-5.png"]


def test_sequence_continues_after_existing_files(tmp_path: Path) -> None:
    folder = tmp_path / "2024-07-27"
    folder.mkdir()
    (folder / "00007-123.png").write_bytes(b"x")
    (folder / "00003-9.png").write_bytes(b"x")
    (folder / "notes.txt").write_text("not numbered")
    path = save_generated_image(_image(), outdir=tmp_path, seed=42, infotext=INFOTEXT, when=WHEN)
    assert path.name == "00008-42.png"


def test_get_next_sequence_number_semantics(tmp_path: Path) -> None:
    assert get_next_sequence_number(tmp_path / "missing") == 0
    assert get_next_sequence_number(tmp_path) == 0
    for name in ("00002-1.png", "00010.png", "abc-5.png", "-3.png", "00004-7.png.tmp"):
        (tmp_path / name).write_bytes(b"")
    assert get_next_sequence_number(tmp_path) == 11
    (tmp_path / "grid-0020.png").write_bytes(b"")
    assert get_next_sequence_number(tmp_path, "grid") == 21


def test_png_parameters_chunk_round_trip(tmp_path: Path) -> None:
    path = save_generated_image(_image(), outdir=tmp_path, seed=1, infotext=INFOTEXT, when=WHEN)
    with Image.open(path) as saved:
        assert saved.info["parameters"] == INFOTEXT
        assert read_infotext(saved) == INFOTEXT
        assert saved.size == (16, 16)


@pytest.mark.parametrize("extension", ["jpg", "webp"])
def test_exif_user_comment_round_trip(tmp_path: Path, extension: str) -> None:
    rgba = Image.new("RGBA", (16, 16), (0, 128, 255, 200))
    path = save_generated_image(rgba, outdir=tmp_path, seed=9, infotext=INFOTEXT, when=WHEN, extension=extension)
    assert path.name == f"00000-9.{extension}"
    with Image.open(path) as saved:
        assert "parameters" not in saved.info
        assert read_infotext(saved) == INFOTEXT


def test_no_temporary_files_left(tmp_path: Path) -> None:
    path = save_generated_image(_image(), outdir=tmp_path, seed=1, infotext=INFOTEXT, when=WHEN)
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_unsupported_extension_raises(tmp_path: Path) -> None:
    with pytest.raises(ImageSaveError, match="bmp"):
        save_generated_image(_image(), outdir=tmp_path, seed=1, infotext=INFOTEXT, when=WHEN, extension="bmp")


def test_failed_write_releases_reservation(tmp_path: Path) -> None:
    cmyk = Image.new("CMYK", (16, 16))  # PNG cannot store CMYK: PIL raises while writing
    with pytest.raises(OSError):
        save_generated_image(cmyk, outdir=tmp_path, seed=1, infotext=INFOTEXT, when=WHEN)
    assert list((tmp_path / "2024-07-27").iterdir()) == []


def test_concurrent_saves_get_distinct_numbers(tmp_path: Path) -> None:
    barrier = threading.Barrier(8)
    results: list[Path] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        try:
            barrier.wait()
            path = save_generated_image(_image(), outdir=tmp_path, seed=index, infotext=INFOTEXT, when=WHEN)
            with lock:
                results.append(path)
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert len({p.name for p in results}) == 8
    numbers = sorted(int(p.name.split("-")[0]) for p in results)
    assert numbers == list(range(8))
    files = sorted(p.name for p in (tmp_path / "2024-07-27").iterdir())
    assert len(files) == 8 and all(name.endswith(".png") for name in files)
    for path in results:
        with Image.open(path) as saved:
            assert saved.info["parameters"] == INFOTEXT


def test_reservation_skips_number_held_by_another_saver(tmp_path: Path) -> None:
    folder = tmp_path / "2024-07-27"
    folder.mkdir()
    (folder / "00000.tmp").write_bytes(b"")  # another process is writing number 0
    path = save_generated_image(_image(), outdir=tmp_path, seed=3, infotext=INFOTEXT, when=WHEN)
    assert path.name == "00001-3.png"


def _save_in_child(outdir: str, seeds: list[int]) -> None:
    for seed in seeds:
        save_generated_image(_image(), outdir=Path(outdir), seed=seed, infotext=INFOTEXT, when=WHEN)


def test_concurrent_saves_from_processes_get_distinct_numbers(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=_save_in_child, args=(str(tmp_path), [p * 10 + i for i in range(3)]))
                 for p in range(3)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    names = sorted(p.name for p in (tmp_path / "2024-07-27").iterdir())
    assert len(names) == 9
    assert sorted(int(name.split("-")[0]) for name in names) == list(range(9))
