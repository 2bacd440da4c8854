"""Issue 35.9's conveniences, below the page: styles renamed, edited and deleted in styles.csv; the Zip of a
result gallery; the batch grid's layout and file; the ✨ hires rerun's request; the theme flag and setting;
``user.css`` added to the page's style sheets."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from PIL import Image

from modules.flags import FlagError, parse_flags
from modules.gallery.batch_grid import make_grid, save_grid, wants_grid
from modules.gallery.zip_results import ZipError, zip_files
from modules.generation.hires_again import HiresAgainError, hires_request_values
from modules.generation.prompts.style_edit import edit_style, rename_style
from modules.generation.prompts.styles import StyleError, StyleStore, read_styles_csv
from webui.look import STYLE_CSS, css_paths, page_theme


def _store(tmp_path: Path) -> StyleStore:
    path = tmp_path / "styles.csv"
    path.write_text("name,prompt,negative_prompt\nfilm,\"{prompt}, film grain\",blurry\nsharp,sharp,\n",
                    encoding="utf-8")
    return StyleStore([path])


def test_rename_keeps_texts_and_refuses_a_taken_name(tmp_path: Path) -> None:
    store = _store(tmp_path)
    renamed = rename_style(store, "film", "analog film")
    assert (renamed.name, renamed.prompt, renamed.negative_prompt) == ("analog film", "{prompt}, film grain", "blurry")
    on_disk = {s.name: s for s in read_styles_csv(tmp_path / "styles.csv")}
    assert set(on_disk) == {"analog film", "sharp"} and on_disk["analog film"].negative_prompt == "blurry"
    with pytest.raises(StyleError, match="already a style named 'sharp'"):
        rename_style(store, "analog film", "sharp")
    with pytest.raises(StyleError, match="unknown style"):
        rename_style(store, "film", "x")
    with pytest.raises(StyleError, match="needs a name"):
        rename_style(store, "sharp", "#comment")
    assert "sharp" in store.names()


def test_edit_and_delete_reach_the_file(tmp_path: Path) -> None:
    store = _store(tmp_path)
    edit_style(store, "sharp", "very sharp", "soft")
    store.delete_style("film")
    on_disk = [(s.name, s.prompt, s.negative_prompt) for s in read_styles_csv(tmp_path / "styles.csv")]
    assert on_disk == [("sharp", "very sharp", "soft")]
    assert StyleStore([tmp_path / "styles.csv"]).names() == ["sharp"]


def test_zip_holds_the_allowed_files_once_each(tmp_path: Path) -> None:
    cache, other = tmp_path / "cache", tmp_path / "elsewhere"
    (cache / "a").mkdir(parents=True)
    (cache / "b").mkdir()
    other.mkdir()
    first, second, outside = cache / "a" / "image.png", cache / "b" / "image.png", other / "secret.png"
    for path in (first, second, outside):
        Image.new("RGB", (4, 4)).save(path)
    made = zip_files([first, second, first, outside, cache / "missing.png"], cache / "zips", allowed=[cache])
    assert made.parent == cache / "zips" and made.suffix == ".zip"
    with zipfile.ZipFile(made) as archive:
        assert sorted(archive.namelist()) == ["image-2.png", "image.png"]
    with pytest.raises(ZipError, match="No images to zip"):
        zip_files([outside], cache / "zips", allowed=[cache])
    assert not list((cache / "zips").glob(".zip-*")), "no temporary file left behind"


def test_batch_grid_layout_and_file(tmp_path: Path) -> None:
    assert make_grid([Image.new("RGB", (8, 6))] * 3).size == (16, 12), "3 images: 2 rows (A1111's round(sqrt))"
    assert make_grid([Image.new("RGB", (8, 6))] * 2).size == (16, 6)
    colours = ["red", "green", "blue", "white"]
    grid = make_grid([Image.new("RGB", (8, 6), c) for c in colours])
    assert grid.size == (16, 12)
    assert grid.getpixel((0, 0)) == (255, 0, 0) and grid.getpixel((8, 0)) == (0, 128, 0)
    assert grid.getpixel((0, 6)) == (0, 0, 255) and grid.getpixel((15, 11)) == (255, 255, 255)
    assert not wants_grid(1, return_grid=True, grid_save=True)
    assert wants_grid(2, return_grid=False, grid_save=True) and not wants_grid(2, return_grid=False, grid_save=False)
    path = save_grid(grid, tmp_path / "txt2img-grids", "a cat\nSteps: 2, Seed: 1")
    assert path.parent.parent == tmp_path / "txt2img-grids" and path.suffix == ".png"
    with Image.open(path) as saved:
        assert saved.size == (16, 12) and saved.text["parameters"].startswith("a cat")


def test_hires_rerun_takes_the_images_parameters_and_the_tabs_hires_settings() -> None:
    tab = {"prompt": "changed since", "seed": -1, "steps": 30, "enable_hr": False, "hr_scale": 1.5,
           "hr_upscaler": "Latent", "denoising_strength": 0.4, "batch_size": 4, "n_iter": 3}
    text = "a red circle\nNegative prompt: blurry\nSteps: 5, Sampler: Euler, CFG scale: 6, Seed: 1234, Size: 64x64"
    values = hires_request_values(tab, text)
    assert values["prompt"] == "a red circle" and values["negative_prompt"] == "blurry"
    assert (values["seed"], values["steps"], values["width"], values["height"]) == (1234, 5, 64, 64)
    assert values["enable_hr"] is True and (values["batch_size"], values["n_iter"]) == (1, 1)
    assert (values["hr_scale"], values["hr_upscaler"], values["denoising_strength"]) == (1.5, "Latent", 0.4)
    with pytest.raises(HiresAgainError, match="Select a generated image"):
        hires_request_values(tab, "")
    with pytest.raises(HiresAgainError, match="already made with the hires fix"):
        hires_request_values(tab, text + ", Denoising strength: 0.5, Hires upscale: 2")


def test_theme_flag_and_setting() -> None:
    assert parse_flags(["--theme", "dark"]).theme == "dark"
    assert parse_flags([]).theme is None
    with pytest.raises(FlagError, match="theme"):
        parse_flags(["--theme", "purple"])
    assert page_theme("dark", "light") == "dark"
    assert page_theme(None, "light") == "light"
    assert page_theme(None, "system") == "system"


def test_user_css_is_added_after_the_studios(tmp_path: Path) -> None:
    assert css_paths(tmp_path) == [STYLE_CSS]
    (tmp_path / "user.css").write_text("body { outline: 1px solid red; }", encoding="utf-8")
    assert css_paths(tmp_path) == [STYLE_CSS, tmp_path / "user.css"]


def test_the_result_gallery_gets_a_grid_only_for_a_generation_batch(tmp_path: Path) -> None:
    """webui/results.py: a txt2img batch shows its grid first and saves it (return_grid, grid_save); one image,
    a folder batch, or a run that saves no grid (grid_save off) get none saved; return_grid off shows none."""
    from types import SimpleNamespace

    from modules.generation.requests import Txt2ImgRequest
    from modules.settings import Settings
    from webui.results import _with_grid

    def run(kind: str, count: int, **settings: bool) -> tuple[list, list, list, list[Path]]:
        outputs = tmp_path / kind / str(len(list(tmp_path.glob(f"{kind}/*"))))
        ctx = SimpleNamespace(settings=SimpleNamespace(current=Settings(**settings)), paths=SimpleNamespace(
            output_dir=lambda name: outputs / name, scrub=str))
        job = SimpleNamespace(kind=kind, request=Txt2ImgRequest(prompt="x"))
        images = [Image.new("RGB", (8, 8), c) for c in ("red", "blue", "green")[:count]]
        items, texts, seeds, _ = _with_grid(ctx, job, [(im, "seed") for im in images], images,
                                            [f"t{i}" for i in range(count)], list(range(count)))
        return items, texts, seeds, list(outputs.rglob("*.png"))

    items, texts, seeds, saved = run("txt2img", 3)
    assert [c for _, c in items] == ["grid", "seed", "seed", "seed"] and texts[0] == "t0" and seeds[:2] == [0, 0]
    assert len(saved) == 1 and saved[0].parent.parent.name == "txt2img-grids"
    assert [c for _, c in run("txt2img", 1)[0]] == ["seed"] and run("txt2img", 1)[3] == []
    assert [c for _, c in run("img2img_batch", 3)[0]] == ["seed"] * 3
    items, _, _, saved = run("img2img", 2, return_grid=False)
    assert [c for _, c in items] == ["seed", "seed"] and len(saved) == 1
    items, _, _, saved = run("txt2img", 2, grid_save=False)
    assert items[0][1] == "grid" and saved == []
