"""ControlNet in a real browser: upload a control image, preview the canny map, pick a ControlNet model
(after 🔄), enable the unit and generate; the infotext names the unit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.e2e.conftest import choose, screenshot, set_number

pytestmark = pytest.mark.timeout(300)


def _tiny_controlnet_for(studio: Any) -> str:
    from tests.fixtures.tiny_networks import controlnet_ldm_state, tiny_controlnet, write_safetensors

    unet = studio.ctx.models.active.model.pipeline.unet
    folder = studio.ctx.paths.controlnet_dir
    folder.mkdir(parents=True, exist_ok=True)
    write_safetensors(folder / "e2e-canny.safetensors", controlnet_ldm_state(tiny_controlnet(unet)))
    return "e2e-canny"


def test_controlnet_unit_by_clicking(page: Any, studio: Any, tmp_path: Path) -> None:
    name = _tiny_controlnet_for(studio)
    control = tmp_path / "control.png"
    picture = Image.new("RGB", (64, 64), (20, 40, 160))
    picture.paste((230, 40, 40), (16, 16, 48, 48))
    picture.save(control)

    page.fill("#txt2img_prompt textarea", "a large red square on a blue background")
    set_number(page, "txt2img_width", "64")
    set_number(page, "txt2img_height", "64")
    set_number(page, "txt2img_steps", "8")
    page.locator("#txt2img_controlnet").get_by_text("ControlNet", exact=True).first.click()
    page.locator("#txt2img_controlnet_0_image input[type=file]").set_input_files(str(control))
    choose(page, "txt2img_controlnet_0_module", "canny")
    page.locator("#txt2img_controlnet_0_threshold_a").get_by_text("Canny Low Threshold").wait_for()
    page.click("#txt2img_controlnet_0_run_preview")
    page.locator("#txt2img_controlnet_0_preview img").wait_for(state="visible")

    # the shipped canny ControlNet is listed from the start, so there is no "no model yet" hint;
    # the one written above appears after 🔄
    assert not page.inner_text("#txt2img_controlnet_hint").strip()
    page.click("#txt2img_controlnet_0_refresh_models")
    choose(page, "txt2img_controlnet_0_model", name)
    page.locator("#txt2img_controlnet_0_enable input").check()
    page.click("#txt2img_generate")
    page.wait_for_selector("#txt2img_status .atelier-progress[data-state=done]", timeout=120_000)
    infotext = page.input_value("#txt2img_infotext textarea")
    assert f'ControlNet 0: "Module: canny, Model: {name} [' in infotext, infotext
    assert "Threshold A: 100" in infotext, "the module's default threshold was used"
    page.locator("#txt2img_controlnet").scroll_into_view_if_needed()
    screenshot(page, "controlnet", full_page=True)
