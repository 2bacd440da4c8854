"""The studio in a real browser (Chromium driven by Playwright): generate by clicking and find the images
in the results gallery and in the History browser (open one, send it to img2img, delete it to the
trash); wait behind another job (queue position), skip a
batch and interrupt a long run. Screenshots: test-artifacts/screenshots/."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from tests.e2e.conftest import open_tab, screenshot, set_number, wait_text

pytestmark = pytest.mark.timeout(300)

SIZE = "64"
PROMPT = "a large red circle on a blue background"  # the embedded model's caption language


def test_generate_by_clicking_then_find_it_in_history(page: Any, studio: Any) -> None:
    studio.ctx.settings.update({"grid_save": False})  # History then lists the two images, not their grid too
    page.fill("#txt2img_prompt textarea", PROMPT)
    set_number(page, "txt2img_width", SIZE)
    set_number(page, "txt2img_height", SIZE)
    set_number(page, "txt2img_steps", "20")
    set_number(page, "txt2img_batch_size", "2")
    page.click("#txt2img_generate")
    page.wait_for_selector("#txt2img_status .atelier-progress[data-state=done]", timeout=120_000)
    images = page.locator("#txt2img_gallery img")
    images.first.wait_for(state="visible")
    assert images.count() == 3, "the batch's grid (setting return_grid), then both images"
    assert "2 image(s)" in page.inner_text("#txt2img_status")
    infotext = page.input_value("#txt2img_infotext textarea")
    assert infotext.startswith(PROMPT) and "Steps: 20" in infotext and "Size: 64x64" in infotext
    seed = int(re.search(r"Seed: (\d+)", infotext).group(1))
    saved = list((studio.ctx.paths.outputs_dir / "txt2img-images").rglob(f"*-{seed}.png"))
    assert saved, "the first image is saved to outputs/ under its seed"
    screenshot(page, "txt2img-generated", full_page=True)

    page.click("#txt2img_reuse_seed")  # ♻️ puts the shown image's seed into the seed field
    page.wait_for_function(f"() => document.querySelector('#txt2img_seed input').value === '{seed}'")

    open_tab(page, "History")  # opening the tab lists outputs/, newest first
    page.fill("#history_query textarea", "red circle")
    page.click("#history_search")
    wait_text(page, "#history_status", r"^2 image\(s\) of \d+")
    thumbs = page.locator("#history_gallery img")
    thumbs.first.wait_for(state="visible")
    assert thumbs.count() == 2
    thumbs.first.click()  # open one full size, with its parameters
    page.locator("#history_image img").wait_for(state="visible")
    page.wait_for_function("() => document.querySelector('#history_infotext textarea').value.includes('Steps: 20')")
    assert page.input_value("#history_infotext textarea").startswith(PROMPT)
    relative = page.inner_text("#history_path").strip().removeprefix("outputs/")
    assert relative.startswith("txt2img-images/") and relative.endswith(".png"), relative
    screenshot(page, "history")

    page.click("#history_send_to_img2img")  # the image and its parameters go to img2img
    page.locator("#img2img_image img").wait_for(state="visible")
    page.wait_for_function(f"() => document.querySelector('#img2img_prompt textarea').value === '{PROMPT}'")
    open_tab(page, "History")
    page.click("#history_delete")  # to outputs/.trash/, never lost
    wait_text(page, "#history_path", r"Moved outputs/.* to \.trash/")
    outputs = studio.ctx.paths.outputs_dir
    assert not (outputs / relative).exists() and (outputs / ".trash" / relative).is_file()
    wait_text(page, "#history_status", r"^1 image\(s\)")


def test_queue_position_skip_and_interrupt(page: Any, studio: Any) -> None:
    from modules.generation.requests import Txt2ImgRequest

    page.fill("#txt2img_prompt textarea", "a long run to skip and interrupt")
    set_number(page, "txt2img_width", SIZE)
    set_number(page, "txt2img_height", SIZE)
    set_number(page, "txt2img_steps", "150")
    set_number(page, "txt2img_batch_count", "30")
    blocker = studio.ctx.queue.submit(Txt2ImgRequest(prompt="someone else's job", steps=150, n_iter=30, width=64,
                                                     height=64, save_images=False), owner="someone-else")
    try:
        page.click("#txt2img_generate")
        wait_text(page, "#txt2img_status", r"Waiting in queue: 1 job\(s\) ahead")
        screenshot(page, "txt2img-queued")
    finally:
        studio.ctx.queue.cancel(blocker.id)
    # the bar shows percent, steps, batch and an ETA once sampling runs, and a live preview appears
    text = wait_text(page, "#txt2img_status", r"step \d+/150 · batch 1/30 · ETA")
    assert re.search(r"\d+% · step \d+/150 · batch 1/30 · ETA", text), text
    page.wait_for_selector("#txt2img_gallery img", timeout=60_000)
    screenshot(page, "txt2img-progress")

    page.click("#txt2img_skip")  # ends this batch and goes on with the next one
    wait_text(page, "#txt2img_status", r"batch 2/30")

    started = time.monotonic()
    page.click("#txt2img_interrupt")
    page.wait_for_selector("#txt2img_status .atelier-progress[data-state=interrupted]", timeout=60_000)
    assert time.monotonic() - started < 30, "interrupt stops the run promptly"
    assert re.search(r"Interrupted: \d+ image\(s\)", page.inner_text("#txt2img_status"))
    assert studio.ctx.queue.current() is None, "nothing runs after the interrupt"
    screenshot(page, "txt2img-interrupted")
