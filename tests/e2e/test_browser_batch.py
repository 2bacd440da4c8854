"""img2img Batch and Sketch in a real browser: three uploaded files give three outputs (and a summary), and
the colours drawn in Sketch reach the init image the job receives."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.e2e.conftest import open_tab, screenshot, set_number, wait_text

pytestmark = pytest.mark.timeout(300)


def _jobs(studio: Any, kind: str) -> list[Any]:
    return [job for job in studio.ctx.queue.jobs() if job.kind == kind]


def _next_job(studio: Any, kind: str, before: int, timeout: float = 180) -> Any:
    """The first job of ``kind`` submitted after ``before`` of them existed, once it has finished."""
    import time

    deadline = time.time() + timeout
    while len(_jobs(studio, kind)) <= before:
        assert time.time() < deadline, f"no {kind} job was submitted"
        time.sleep(0.1)
    job = _jobs(studio, kind)[before]
    assert job.done.wait(max(deadline - time.time(), 1)), f"the {kind} job did not finish"
    return job


#: the status line of a job this page ran (a re-attached one says "finished while the page was away")
RAN_HERE = r"image\(s\) in [0-9.]+ s"


def test_a_batch_of_three_uploaded_files_gives_three_outputs(page: Any, studio: Any, tmp_path: Path) -> None:
    files = []
    for index, colour in enumerate(((200, 30, 30), (30, 200, 30), (30, 30, 200))):
        path = tmp_path / f"batch-{index}.png"
        Image.new("RGB", (64, 64), colour).save(path)
        files.append(str(path))
    before = len(_jobs(studio, "img2img_batch"))
    open_tab(page, "img2img")
    open_tab(page, "Batch")
    page.locator("#img2img_batch_files input[type=file]").set_input_files(files)
    page.locator("#img2img_batch_files").get_by_text("batch-2").first.wait_for()
    set_number(page, "img2img_steps", "2")
    set_number(page, "img2img_width", "64")
    set_number(page, "img2img_height", "64")
    page.fill("#img2img_prompt textarea", "a square")
    page.click("#img2img_generate")
    job = _next_job(studio, "img2img_batch", before)
    status = wait_text(page, "#img2img_status .atelier-progress[data-state=done]", r"batch: 3 of 3 done",
                       timeout=60_000)
    assert "3 image(s)" in status, status
    page.wait_for_function("() => document.querySelectorAll('#img2img_gallery img').length >= 3")
    screenshot(page, "img2img-batch")
    assert job.request.batch_names == ["batch-0.png", "batch-1.png", "batch-2.png"]
    assert len(job.result.images) == 3 and job.result.batch.done == 3 and not job.result.batch.failed


def _draw_stroke(page: Any, selector: str, points: list[tuple[float, float]]) -> None:
    """Drag the mouse across the editor's canvas through ``points`` (fractions of its width and height)."""
    canvas = page.locator(f"{selector} canvas").first
    canvas.wait_for(state="visible")
    canvas.scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    box = canvas.bounding_box()
    x0, y0 = box["x"] + box["width"] * points[0][0], box["y"] + box["height"] * points[0][1]
    page.mouse.move(x0, y0)
    page.mouse.down()
    for fx, fy in points[1:]:
        page.mouse.move(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy, steps=8)
    page.mouse.up()


def test_sketch_colours_reach_the_init_image(page: Any, studio: Any, tmp_path: Path) -> None:
    grey = tmp_path / "grey.png"
    Image.new("RGB", (64, 64), (128, 128, 128)).save(grey)
    before = len(_jobs(studio, "img2img"))
    open_tab(page, "img2img")
    open_tab(page, "Sketch")
    page.locator("#img2img_sketch canvas").first.wait_for(state="visible")
    page.wait_for_timeout(1000)  # the editor sets up its drawing surface once its tab is shown
    page.locator("#img2img_sketch input[type=file]").first.set_input_files(str(grey))
    page.locator("#img2img_sketch").get_by_text("Upload an image").wait_for(state="hidden")
    page.wait_for_timeout(500)  # the background is drawn onto the canvas
    _draw_stroke(page, "#img2img_sketch", [(0.3, 0.5), (0.5, 0.5), (0.7, 0.5)])
    set_number(page, "img2img_steps", "2")
    page.fill("#img2img_prompt textarea", "a sketch")
    page.click("#img2img_generate")
    job = _next_job(studio, "img2img", before)
    wait_text(page, "#img2img_status .atelier-progress[data-state=done]", RAN_HERE, timeout=60_000)
    screenshot(page, "img2img-sketch")
    init = Image.open(io.BytesIO(base64.b64decode(job.request.init_images[0]))).convert("RGB")
    pixels = np.asarray(init, dtype=np.int16)
    strong_red = (pixels[..., 0] > 200) & (pixels[..., 1] < 80) & (pixels[..., 2] < 80)
    assert strong_red.sum() > 20, "the red stroke is part of the init image"
    assert tuple(pixels[2, 2]) == (128, 128, 128), "away from the stroke the image is unchanged"
    assert job.request.mask is None


def test_extras_batch_process_upscales_every_upload(page: Any, studio: Any, tmp_path: Path) -> None:
    files = []
    for index in range(2):
        path = tmp_path / f"up-{index}.png"
        Image.new("RGB", (32, 32), (40 * index, 90, 160)).save(path)
        files.append(str(path))
    before = len(_jobs(studio, "extras"))
    open_tab(page, "Extras")
    open_tab(page, "Batch Process")
    page.locator("#extras_batch_generate").wait_for(state="visible")
    assert not page.locator("#extras_generate").is_visible()
    page.locator("#extras_image_batch input[type=file]").set_input_files(files)
    page.locator("#extras_image_batch").get_by_text("up-1").first.wait_for()
    page.click("#extras_batch_generate")
    job = _next_job(studio, "extras", before, timeout=120)
    status = wait_text(page, "#extras_info .atelier-status", r"2 of 2 done", timeout=60_000)
    assert "saved in outputs" in status, status
    page.wait_for_function("() => document.querySelectorAll('#extras_batch_gallery img').length >= 2")
    assert [image.size for image in job.result.images] == [(64, 64), (64, 64)]
    assert job.result.names == ["up-0.png", "up-1.png"]


def test_copy_image_between_modes(page: Any, studio: Any, tmp_path: Path) -> None:
    source = tmp_path / "copy.png"
    Image.new("RGB", (64, 48), (20, 120, 220)).save(source)
    open_tab(page, "img2img")
    page.locator("#img2img_image input[type=file]").first.set_input_files(str(source))
    page.locator("#img2img_image img").first.wait_for(state="visible")
    page.click("#img2img_copy_to_sketch")
    page.locator("#img2img_sketch canvas").first.wait_for(state="visible")  # the Sketch tab opened
    page.locator("#img2img_sketch").get_by_text("Upload an image").wait_for(state="hidden")
    page.wait_for_timeout(500)
    before = len(_jobs(studio, "img2img"))
    set_number(page, "img2img_steps", "2")
    page.click("#img2img_generate")
    job = _next_job(studio, "img2img", before)
    wait_text(page, "#img2img_status .atelier-progress[data-state=done]", RAN_HERE, timeout=60_000)
    init = Image.open(io.BytesIO(base64.b64decode(job.request.init_images[0]))).convert("RGB")
    assert init.size == (64, 48), "the copied image is the init image"
    # the canvas may shift a colour by a step or two
    assert max(abs(a - b) for a, b in zip(init.getpixel((5, 5)), (20, 120, 220))) <= 4, init.getpixel((5, 5))
