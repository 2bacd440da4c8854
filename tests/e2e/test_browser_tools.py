"""The studio in a real browser, beyond generating: round-trip a PNG through PNG Info into txt2img,
refused requests shown as readable messages, interrogate into the prompt, and no tab left empty."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.e2e.conftest import choose, open_tab, screenshot, set_number, toast_text, wait_text

pytestmark = pytest.mark.timeout(300)


def _generated_png(studio: Any, prompt: str, seed: int) -> Path:
    from modules.generation.requests import Txt2ImgRequest
    from modules.jobs.submit import submit_job

    job = submit_job(studio.ctx, Txt2ImgRequest(prompt=prompt, negative_prompt="blurry", steps=3, width=64,
                                                height=64, seed=seed, cfg_scale=6.5))
    assert job.done.wait(120) and job.result is not None, job.error
    return Path(job.result.paths[0])


def test_png_info_round_trip(page: Any, studio: Any) -> None:
    png = _generated_png(studio, "a green square, (bold:1.2)", 31337)
    open_tab(page, "Extras")
    open_tab(page, "PNG Info")
    page.locator("#pnginfo_image input[type=file]").set_input_files(str(png))
    table = page.locator("#pnginfo_html table")
    table.wait_for(timeout=30_000)
    shown = table.inner_text()
    assert "31337" in shown and "a green square, (bold:1.2)" in shown and "Steps" in shown
    screenshot(page, "pnginfo")
    page.click("#pnginfo_send_to_txt2img")
    page.wait_for_function(
        "() => document.querySelector('#txt2img_prompt textarea').value === 'a green square, (bold:1.2)'")
    assert page.input_value("#txt2img_neg_prompt textarea") == "blurry"
    assert page.input_value("#txt2img_seed input") == "31337"
    assert page.input_value("#txt2img_steps input[type=number]") == "3"
    assert page.input_value("#txt2img_cfg_scale input[type=number]") == "6.5"
    assert page.input_value("#txt2img_width input[type=number]") == "64"
    assert page.locator("#txt2img_prompt").is_visible(), "switched to the txt2img tab"


def test_refused_requests_are_readable_messages(page: Any, studio: Any) -> None:
    page.fill("#txt2img_prompt textarea", "a size the model cannot make")
    set_number(page, "txt2img_width", "68")
    page.click("#txt2img_generate")
    message = toast_text(page)
    assert "width" in message and "multiple of 8" in message, message
    assert "Traceback" not in message and "Exception" not in message
    # the reason also stays in the status line after the toast is gone
    status = wait_text(page, "#txt2img_status .atelier-progress[data-state=failed]", r"^Not started: width")
    assert "multiple of 8" in status, status
    page.wait_for_timeout(500)  # the toast slides in
    screenshot(page, "error-message")
    page.locator(".toast-close").first.click()

    open_tab(page, "img2img")
    page.click("#img2img_generate")
    wait_text(page, ".toast-body.error", "img2img needs an init image: upload one first")
    wait_text(page, "#img2img_status .atelier-progress", "^Not started: img2img needs an init image")
    assert studio.ctx.queue.current() is None


#: tab -> (sub-tab or None, an element that only a built tab has)
TABS = {"img2img": (None, "#img2img_image"), "Inpaint": ("img2img", "#img2img_inpaint_editor"),
        "Outpaint": ("img2img", "#img2img_outpaint_image"), "Upscale": ("Extras", "#extras_upscaler_1"),
        "History": (None, "#history_gallery"), "Models": (None, "#models_table"),
        "Settings": (None, "#setting_show_progress_every_n_steps")}


def test_no_tab_is_empty(page: Any, studio: Any) -> None:
    for name, (parent, selector) in TABS.items():
        if parent:
            open_tab(page, parent)
        open_tab(page, name)
        page.locator(selector).first.wait_for(state="visible")
    open_tab(page, "Models")  # the tab lists every checkpoint with its family; Inspect reads its header
    wait_text(page, "#models_table", r"SD 1\.x")
    page.click("#models_inspect")
    wait_text(page, "#models_details", r"Tensors")
    screenshot(page, "models")
    open_tab(page, "Settings")
    screenshot(page, "settings")


def test_interrogate_fills_the_prompt_or_says_why(page: Any, studio: Any, tmp_path: Path) -> None:
    picture = tmp_path / "shape.png"
    image = Image.new("RGB", (64, 64), (30, 60, 200))
    image.paste((220, 40, 40), (16, 16, 48, 48))
    image.save(picture)
    open_tab(page, "img2img")
    page.click("#img2img_interrogate")  # nothing uploaded yet
    wait_text(page, "#img2img_paste_note", "Upload an image into the img2img tab first")
    page.locator("#img2img_image input[type=file]").set_input_files(str(picture))
    page.locator("#img2img_image img").wait_for(state="visible")
    page.click("#img2img_interrogate")
    if studio.ctx.interrogator.find() is None:  # the classifier is not installed: the page says where it looked
        wait_text(page, "#img2img_paste_note", "Model not found: the interrogation classifier")
    else:
        wait_text(page, "#img2img_paste_note", "Interrogated")
        prompt = page.input_value("#img2img_prompt textarea")
        assert prompt.startswith("a ") and "background" in prompt, prompt


def test_styles_and_pasting_an_infotext(page: Any, studio: Any) -> None:
    page.fill("#txt2img_prompt textarea", "a small yellow triangle")
    page.fill("#txt2img_neg_prompt textarea", "blurry")
    page.fill("#txt2img_style_name input", "e2e yellow")
    page.click("#txt2img_style_create")
    wait_text(page, "#txt2img_paste_note", "Saved style 'e2e yellow'")
    assert "e2e yellow" in studio.ctx.paths.data_dir.joinpath("styles.csv").read_text(encoding="utf-8")
    page.once("dialog", lambda dialog: dialog.accept())  # Clear asks "Delete prompt?" first
    page.click("#txt2img_clear_prompt")
    page.wait_for_function("() => document.querySelector('#txt2img_prompt textarea').value === ''")
    page.fill("#txt2img_neg_prompt textarea", "")
    choose(page, "txt2img_styles", "e2e yellow", multiselect=True)
    page.click("#txt2img_style_apply")
    page.wait_for_function(
        "() => document.querySelector('#txt2img_prompt textarea').value === 'a small yellow triangle'")
    assert page.input_value("#txt2img_neg_prompt textarea") == "blurry"

    infotext = "a green heart\nNegative prompt: dark\nSteps: 7, Sampler: Euler, CFG scale: 5, Seed: 99, Size: 64x64"
    page.fill("#txt2img_prompt textarea", infotext)
    page.click("#txt2img_paste")  # ↙️ reads the pasted parameters into every field
    wait_text(page, "#txt2img_paste_note", r"Filled \d+ field")
    assert page.input_value("#txt2img_prompt textarea") == "a green heart"
    assert page.input_value("#txt2img_neg_prompt textarea") == "dark"
    assert page.input_value("#txt2img_steps input[type=number]") == "7"
    assert page.input_value("#txt2img_seed input") == "99"
    assert page.input_value("#txt2img_width input[type=number]") == "64"
    assert page.input_value("#txt2img_sampling input") == "Euler"
