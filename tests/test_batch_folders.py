"""Folders typed by a user (img2img and Extras batches): only under the data dir or an --allowed-dir root,
symlinks resolved, ``..`` cannot climb out; the batch summary; PNG info taken per image."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from modules.flags import FlagError, parse_flags
from modules.folder_access import FolderNotAllowed, allowed_roots, image_files, inside, resolve_folder
from modules.jobs.batch_summary import BatchSummary


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, ...]:
    data, extra = tmp_path / "data", tmp_path / "allowed"
    (data / "in").mkdir(parents=True)
    extra.mkdir()
    (tmp_path / "secret").mkdir()
    return allowed_roots(data, [extra])


def test_folders_under_a_root_are_accepted(roots, tmp_path) -> None:
    assert resolve_folder(str(tmp_path / "data" / "in"), roots) == (tmp_path / "data" / "in").resolve()
    assert resolve_folder("in", roots) == (tmp_path / "data" / "in").resolve()  # relative: from the data dir
    assert resolve_folder(str(tmp_path / "allowed"), roots) == (tmp_path / "allowed").resolve()


def test_outside_dotdot_and_empty_are_refused(roots, tmp_path) -> None:
    with pytest.raises(FolderNotAllowed, match="outside the folders this studio may use"):
        resolve_folder(str(tmp_path / "secret"), roots)
    with pytest.raises(FolderNotAllowed, match="outside"):
        resolve_folder(str(tmp_path / "data" / ".." / "secret"), roots)
    with pytest.raises(FolderNotAllowed, match="outside"):
        resolve_folder("../secret", roots)
    with pytest.raises(FolderNotAllowed, match="outside"):
        resolve_folder("/etc", roots)
    with pytest.raises(FolderNotAllowed, match="outside"):  # a prefix of a root's name is not inside it
        resolve_folder(str(tmp_path / "allowed-not"), roots)
    with pytest.raises(FolderNotAllowed, match="empty"):
        resolve_folder("  ", roots)


def test_a_symlink_that_escapes_is_refused(roots, tmp_path) -> None:
    link = tmp_path / "data" / "link"
    link.symlink_to(tmp_path / "secret", target_is_directory=True)
    with pytest.raises(FolderNotAllowed, match="outside"):
        resolve_folder(str(link), roots)
    with pytest.raises(FolderNotAllowed, match="outside"):  # an output folder below an escaping link too
        resolve_folder(str(link / "new"), roots, must_exist=False, create=True)
    assert not (tmp_path / "secret" / "new").exists()


def test_existence_is_only_told_inside_a_root(roots, tmp_path) -> None:
    with pytest.raises(FolderNotAllowed, match="does not exist"):
        resolve_folder("missing", roots)
    with pytest.raises(FolderNotAllowed, match="outside"):
        resolve_folder(str(tmp_path / "missing"), roots)
    made = resolve_folder("out/a", roots, must_exist=False, create=True)
    assert made.is_dir() and made == (tmp_path / "data" / "out" / "a").resolve()


def test_image_files_skip_links_leading_outside(roots, tmp_path) -> None:
    folder = tmp_path / "data" / "in"
    Image.new("RGB", (8, 8)).save(folder / "b.png")
    Image.new("RGB", (8, 8)).save(folder / "a.jpg")
    (folder / "notes.txt").write_text("x")
    Image.new("RGB", (8, 8)).save(tmp_path / "secret" / "s.png")
    (folder / "c.png").symlink_to(tmp_path / "secret" / "s.png")
    assert [p.name for p in image_files(folder, roots)] == ["a.jpg", "b.png"]
    assert not inside(folder / "c.png", roots)


def test_allowed_dir_flag(tmp_path) -> None:
    flags = parse_flags(["--allowed-dir", str(tmp_path), "--allowed-dir", str(tmp_path / ".")])
    assert flags.allowed_dirs == (tmp_path.resolve(),)
    with pytest.raises(FlagError, match="--allowed-dir"):
        parse_flags(["--allowed-dir", str(tmp_path / "nope")])
    assert parse_flags([]).allowed_dirs == ()


def test_batch_summary_text() -> None:
    summary = BatchSummary(total=4)
    summary.done = 2
    summary.fail("c.png", "not an image file")
    assert summary.text() == "2 of 4 done, 1 failed (c.png: not an image file)"
    summary.interrupted = True
    assert summary.text().endswith("1 not started (interrupted)")
    assert summary.as_dict()["failed"] == [{"name": "c.png", "reason": "not an image file"}]


def test_png_info_changes(tmp_path) -> None:
    from modules.generation.batch_inputs import png_info_changes
    from modules.generation.requests import Img2ImgBatchRequest

    image = Image.new("RGB", (8, 8))
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a cat\nNegative prompt: blurry\nSteps: 7, Sampler: Euler, CFG scale: 4, Seed: 42")
    path = tmp_path / "pnginfo.png"
    image.save(path, pnginfo=info)
    with Image.open(path) as loaded:
        loaded.load()
        req = Img2ImgBatchRequest(input_dir="in", prompt="style", use_png_info=True,
                                  png_info_props=["Prompt", "Seed", "Steps"])
        assert png_info_changes(loaded, req) == {"prompt": "style a cat", "seed": 42, "steps": 7}
        assert png_info_changes(loaded, req.model_copy(update={"use_png_info": False})) == {}


def test_batch_request_needs_one_source() -> None:
    from pydantic import ValidationError

    from modules.generation.requests import Img2ImgBatchRequest

    with pytest.raises(ValidationError, match="exactly one"):
        Img2ImgBatchRequest()
    with pytest.raises(ValidationError, match="exactly one"):
        Img2ImgBatchRequest(input_dir="in", batch_images=["x"])
    with pytest.raises(ValidationError, match="not init_images"):
        Img2ImgBatchRequest(input_dir="in", init_images=["x"])
