"""Issue 35.9's conveniences in a real browser: ⇅ swaps width and height, Clear asks before wiping the
prompt, the hires fix's Enable shows with its section closed, every icon-only button has a tooltip, a
batch shows its grid first (saved to outputs/txt2img-grids) and Zip offers the results as one file, ✨
makes the selected image again with the hires fix, and styles are edited, renamed and deleted."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import choose, set_number, wait_text

pytestmark = pytest.mark.timeout(300)


def test_swap_clear_hires_enable_and_tooltips(page: Any, studio: Any) -> None:
    set_number(page, "txt2img_width", "64")
    set_number(page, "txt2img_height", "128")
    page.click("#txt2img_res_switch_btn")
    page.wait_for_function("() => document.querySelector('#txt2img_width input[type=number]').value === '128'")
    assert page.input_value("#txt2img_height input[type=number]") == "64"

    page.fill("#txt2img_prompt textarea", "keep me")
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.click("#txt2img_clear_prompt")
    page.wait_for_timeout(500)
    assert page.input_value("#txt2img_prompt textarea") == "keep me", "a No keeps the prompt"
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#txt2img_clear_prompt")
    page.wait_for_function("() => document.querySelector('#txt2img_prompt textarea').value === ''")

    assert page.locator("#txt2img_enable_hr input[type=checkbox]").is_visible()
    assert not page.locator("#txt2img_hr_scale").is_visible(), "the section itself stays closed"

    untitled = page.evaluate("() => [...document.querySelectorAll('button.atelier-icon-only')]"
                             ".filter(b => b.offsetParent !== null && !b.title).map(b => b.id)")
    assert untitled == [], f"icon buttons without a tooltip: {untitled}"


def test_batch_grid_zip_and_hires_rerun(page: Any, studio: Any) -> None:
    page.fill("#txt2img_prompt textarea", "a red circle on a blue background")
    for elem, value in (("txt2img_width", "64"), ("txt2img_height", "64"), ("txt2img_steps", "4"),
                        ("txt2img_batch_size", "2")):
        set_number(page, elem, value)
    page.click("#txt2img_generate")
    page.wait_for_selector("#txt2img_status .atelier-progress[data-state=done]", timeout=120_000)
    images = page.locator("#txt2img_gallery img")
    images.first.wait_for(state="visible")
    assert images.count() == 3, "the grid first, then both images"
    grids = list((studio.ctx.paths.outputs_dir / "txt2img-grids").rglob("*.png"))
    assert grids, "the grid is saved to outputs/txt2img-grids"

    page.click("#txt2img_zip")
    link = page.locator("#txt2img_zip_file a").first
    link.wait_for(state="visible", timeout=30_000)
    with page.expect_download() as info:
        link.click()
    archive = Path(info.value.path())
    with zipfile.ZipFile(archive) as packed:
        names = packed.namelist()
    assert len(names) == 3 and all(name.endswith(".png") for name in names), names

    # ✨: the second image (index 2, after the grid) again, with the hires fix at the tab's scale
    shown = page.input_value("#txt2img_infotext textarea")  # the first image's, selected by default
    images.nth(2).click()
    # the selection's infotext arrives after the click: wait for it to change before reading its seed
    page.wait_for_function("(before) => { const v = document.querySelector('#txt2img_infotext textarea').value;"
                           " return /Seed: \\d+/.test(v) && v !== before; }", arg=shown)
    seed = page.input_value("#txt2img_infotext textarea").split("Seed: ")[1].split(",")[0]
    page.keyboard.press("Escape")
    page.click("#txt2img_upscale")
    page.wait_for_function("() => document.querySelector('#txt2img_infotext textarea').value.includes('Hires')",
                           timeout=120_000)
    infotext = page.input_value("#txt2img_infotext textarea")
    assert f"Seed: {seed}," in infotext and "Size: 64x64" in infotext and "Hires upscale: 2" in infotext, infotext


def test_styles_are_edited_renamed_and_deleted(page: Any, studio: Any) -> None:
    store = studio.ctx.styles
    assert store is not None
    store.save_style("e2e style", "{prompt}, in pencil", "colour")
    page.reload()
    page.wait_for_selector("#txt2img_generate", state="visible", timeout=60_000)
    page.locator("#txt2img_style_editor").get_by_text("Edit styles").click()
    choose(page, "txt2img_style_edit_pick", "e2e style")
    page.wait_for_function("() => document.querySelector('#txt2img_style_edit_prompt textarea').value === "
                           "'{prompt}, in pencil'")
    page.fill("#txt2img_style_edit_prompt textarea", "{prompt}, in ink")
    page.click("#txt2img_style_edit_save")
    wait_text(page, "#txt2img_paste_note", "Saved style 'e2e style'")
    assert store.get("e2e style").prompt == "{prompt}, in ink"
    page.fill("#txt2img_style_edit_name textarea, #txt2img_style_edit_name input", "e2e ink")
    page.click("#txt2img_style_edit_rename")
    wait_text(page, "#txt2img_paste_note", "Renamed 'e2e style' to 'e2e ink'")
    assert "e2e ink" in store.names() and "e2e style" not in store.names()
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#txt2img_style_edit_delete")
    wait_text(page, "#txt2img_paste_note", "Deleted style 'e2e ink'")
    assert "e2e ink" not in store.names()
