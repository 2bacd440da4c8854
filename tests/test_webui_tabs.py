"""The studio's tabs through their own Gradio events (gradio_client against a real server): hires fix,
live progress with queue position and previews, img2img / inpaint / outpaint, Extras upscale and
PNG Info, Settings persistence, History search, and readable errors."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from gradio_client import Client, handle_file
from PIL import Image, ImageChops


pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def studio(studio_factory):
    return studio_factory([], with_ui=True, name="ui-tabs")


@pytest.fixture(scope="module")
def client(studio) -> Client:
    return Client(studio.base_url + "/", verbose=False)


def _image(item: Any) -> Image.Image:
    return Image.open(item["image"] if isinstance(item, dict) and "image" in item else item)


def test_txt2img_hires_fix_through_the_page(client: Client) -> None:
    gallery, status, infotext = client.predict(
        "a red circle", "", "Euler", "Automatic", 2, 64, 64, 1, 1, 7, 5, param_12=True, param_13="Latent",
        param_14=2, param_15=0.5, param_16=2.0, api_name="/run")
    assert _image(gallery[0]).size == (128, 128)
    assert "Hires upscale: 2" in infotext and "Denoising strength: 0.5" in infotext
    assert 'data-state="done"' in status and "1 image(s)" in status


def test_live_progress_shows_queue_position_steps_and_previews(studio, client: Client) -> None:
    from modules.generation.requests import Txt2ImgRequest

    studio.ctx.settings.update({"show_progress_every_n_steps": 2})
    blocker = studio.ctx.queue.submit(Txt2ImgRequest(prompt="blocker", steps=150, n_iter=20, width=64, height=64,
                                                     save_images=False), owner="someone-else")
    job = client.submit("progress", "", "Euler", "Automatic", 40, 64, 64, 1, 1, 7, 9, api_name="/run")
    try:
        seen: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any("Waiting in queue" in s for s in seen):
            seen = [out[1] for out in job.outputs() if out and isinstance(out[1], str)]
            time.sleep(0.1)
    finally:
        studio.ctx.queue.cancel(blocker.id)
    job.result(timeout=120)
    outputs = job.outputs()
    statuses = [out[1] for out in outputs]
    assert any("Waiting in queue: 1 job(s) ahead" in s for s in statuses)
    assert any("step " in s and "/40" in s for s in statuses), statuses
    previews = [out[0] for out in outputs if isinstance(out[0], list) and out[0]
                and "preview" in str(out[0][0].get("caption", ""))]
    assert previews, "a live preview was shown while sampling"
    assert "1 image(s)" in statuses[-1]
    studio.ctx.settings.update({"show_progress_every_n_steps": 5})


def _source(tmp: Path, size: int = 64) -> Path:
    path = tmp / "source.png"
    image = Image.new("RGB", (size, size), (30, 60, 200))
    image.paste((220, 40, 40), (16, 16, 48, 48))
    image.save(path)
    return path


def _img2img(client: Client, mode: str, **images: Any) -> tuple[Any, str, str]:
    return client.predict(mode, images.get("image"), images.get("editor"), images.get("mask"), images.get("outpaint"),
                          images.get("left", 0), images.get("right", 0), 0, 0, "fill", "a red square", "",
                          param_21=3, param_28=3, api_name="/img2img")


def test_img2img_inpaint_and_outpaint_through_the_page(client: Client, tmp_path: Path) -> None:
    source = _source(tmp_path)
    gallery, _, infotext = _img2img(client, "img2img", image=handle_file(str(source)))
    assert _image(gallery[0]).size == (64, 64) and "Denoising strength: 0.75" in infotext

    stroke = tmp_path / "stroke.png"
    layer = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    layer.paste((255, 0, 255, 150), (0, 0, 32, 64))  # the left half is painted
    layer.save(stroke)
    editor = {"background": handle_file(str(source)), "layers": [handle_file(str(stroke))],
              "composite": handle_file(str(source))}
    gallery, _, infotext = _img2img(client, "inpaint", editor=editor)
    out = _image(gallery[0]).convert("RGB")
    assert out.size == (64, 64) and "Mask blur: 4" in infotext
    right = (48, 0, 64, 64)  # far from the painted half and its blur: untouched
    assert ImageChops.difference(out.crop(right), Image.open(source).convert("RGB").crop(right)).getbbox() is None

    gallery, _, _ = _img2img(client, "outpaint", outpaint=handle_file(str(source)), left=32, right=16)
    assert _image(gallery[0]).size == (64 + 32 + 16, 64)


def test_missing_images_are_readable_errors(client: Client) -> None:
    with pytest.raises(Exception, match="img2img needs an init image"):
        _img2img(client, "img2img")
    with pytest.raises(Exception, match="inpaint needs an image"):
        _img2img(client, "inpaint")


def test_bad_size_is_a_readable_error(client: Client) -> None:
    with pytest.raises(Exception, match="multiple of 8"):
        client.predict("x", "", "Euler", "Automatic", 2, 68, 64, 1, 1, 7, 1, api_name="/run")


def test_extras_upscale_keeps_parameters_and_png_info_reads_them(studio, client: Client, tmp_path: Path) -> None:
    from modules.images.codec import png_info

    text = "a cat\nSteps: 3, Sampler: Euler, Seed: 77, Size: 32x32"
    source = tmp_path / "with-info.png"
    Image.new("RGB", (32, 32), (10, 200, 10)).save(source, pnginfo=png_info(text))
    result, info = client.predict(handle_file(str(source)), "Scale by", 2, 512, 512, True, "Lanczos", "None", 0,
                                  api_name="/extras")
    assert Image.open(result).size == (64, 64) and "64x64" in info and "saved to" in info
    saved = sorted((studio.ctx.paths.outputs_dir / "extras-images").glob("*.png"))
    assert saved and Image.open(saved[-1]).info["parameters"] == text
    assert "Postprocess upscaler: Lanczos" in Image.open(saved[-1]).info["postprocessing"]

    html, raw = client.predict(handle_file(str(source)), api_name="/pnginfo")
    assert raw == text and "Seed" in html and "77" in html and "Hires" not in html


def test_settings_are_persisted_and_applied(studio, client: Client) -> None:
    current = studio.ctx.settings.as_dict()
    names = list(current)
    values = [current[n] for n in names]
    values[names.index("show_progress_every_n_steps")] = 3
    values[names.index("send_seed")] = False
    out = client.predict(*values, api_name="/settings")
    assert "Saved 2 setting(s)" in out[-1]
    saved = json.loads(studio.ctx.paths.settings_file.read_text())
    assert saved["show_progress_every_n_steps"] == 3 and saved["send_seed"] is False
    assert studio.ctx.settings.current.send_seed is False  # applied without a restart
    studio.ctx.settings.update({"show_progress_every_n_steps": 5, "send_seed": True})


def test_history_search_through_the_page(studio, client: Client) -> None:
    client.predict("an orange triangle", "", "Euler", "Automatic", 2, 64, 64, 1, 1, 7, 11, api_name="/run")
    gallery, status, *_ = client.predict("orange triangle", "All", "All", "", "", api_name="/history_search")
    assert len(gallery) == 1 and "1 image(s)" in status
    _, status, *_ = client.predict("", "All", "All", "2020-13-01", "", api_name="/history_search")
    assert "From must be a date" in status
