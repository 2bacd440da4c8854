"""Settings as A1111 users know them (issue 35.7), in a real browser: sections and a search box that
filters them, the checkpoint field showing the loaded model, VAE as a dropdown, the quicksettings bar
(VAE, clip skip) in the header saving at once, and the theme setting applied when the page loads."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import open_tab, screenshot, set_number

pytestmark = pytest.mark.timeout(300)


def _visible(page: Any, selector: str) -> bool:
    return page.locator(selector).first.is_visible()


def test_settings_search_filters_sections_and_fields(page: Any, studio: Any) -> None:
    open_tab(page, "Settings")
    for section in ("stable_diffusion", "vae", "saving_images_grids", "live_previews", "user_interface"):
        page.locator(f"#settings_section_{section}").first.wait_for(state="visible")
    box = page.locator("#settings_search input, #settings_search textarea").first
    box.click()
    page.keyboard.type("preview")
    page.wait_for_function("() => document.querySelector('#settings_section_vae').offsetParent === null")
    assert _visible(page, "#setting_show_progress_every_n_steps")
    assert _visible(page, "#settings_section_live_previews")
    assert not _visible(page, "#setting_samples_save")
    assert not _visible(page, "#setting_send_seed"), "a setting of a shown section that does not match is hidden"
    box.click()
    page.keyboard.press("Control+A")
    page.keyboard.type("clip skip")  # every word, in the key or the label
    page.wait_for_function("() => document.querySelector('#settings_section_live_previews').offsetParent === null")
    assert _visible(page, "#settings_CLIP_stop_at_last_layers") and not _visible(page, "#setting_sd_prediction_type")
    screenshot(page, "settings-search")
    box.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Backspace")
    page.locator("#settings_section_vae").first.wait_for(state="visible")
    assert _visible(page, "#setting_samples_save")


def test_checkpoint_field_shows_the_loaded_model_and_vae_is_a_dropdown(page: Any, studio: Any) -> None:
    loaded = studio.ctx.catalog.title(studio.ctx.models.active.info)
    open_tab(page, "Settings")
    field = page.locator("#settings_sd_model_checkpoint input").first
    field.wait_for(state="visible")
    assert field.input_value() == loaded
    page.locator("#settings_sd_vae input").first.click()
    options = [text.replace("✓", "").strip() for text in page.locator("li[role=option]").all_inner_texts()]
    assert "Automatic" in options and "None" in options, options
    page.keyboard.press("Escape")
    # a change made elsewhere (the API) shows at the next page load
    studio.ctx.settings.update({"send_seed": False})
    try:
        page.reload()
        page.wait_for_selector("#txt2img_generate", state="visible", timeout=60_000)
        open_tab(page, "Settings")
        page.wait_for_function(
            "() => document.querySelector('#setting_send_seed input[type=checkbox]')?.checked === false")
    finally:
        studio.ctx.settings.update({"send_seed": True})


def test_quicksettings_bar_saves_at_once(page: Any, studio: Any) -> None:
    assert _visible(page, "#setting_sd_model_checkpoint") and _visible(page, "#setting_sd_vae")
    try:
        set_number(page, "setting_CLIP_stop_at_last_layers", "2")
        # the setting is saved, and the tab's own clip skip follows (A1111 has only the setting)
        page.locator("#txt2img_advanced").get_by_text("Advanced").first.click()
        page.wait_for_function("() => document.querySelector('#txt2img_clip_skip input[type=number]')?.value === '2'")
        for _ in range(50):
            if studio.ctx.settings.current.CLIP_stop_at_last_layers == 2:
                break
            page.wait_for_timeout(100)
        assert studio.ctx.settings.current.CLIP_stop_at_last_layers == 2
        page.reload()  # a new page takes the tabs' clip skip from the setting
        page.wait_for_selector("#txt2img_generate", state="visible", timeout=60_000)
        page.wait_for_function(
            "() => document.querySelector('#setting_CLIP_stop_at_last_layers input[type=number]').value === '2'")
        page.locator("#txt2img_advanced").get_by_text("Advanced").first.click()
        page.wait_for_function("() => document.querySelector('#txt2img_clip_skip input[type=number]')?.value === '2'")
    finally:
        studio.ctx.settings.update({"CLIP_stop_at_last_layers": 1})


def test_theme_setting_applies_at_page_load(page: Any, studio: Any) -> None:
    studio.ctx.settings.update({"theme": "dark"})
    try:
        page.reload()
        page.wait_for_function("() => document.body.classList.contains('dark')", timeout=30_000)
        studio.ctx.settings.update({"theme": "light"})
        page.reload()
        page.wait_for_function("() => document.body.dataset.atelierTheme === 'light' && "
                               "!document.body.classList.contains('dark')", timeout=30_000)
    finally:
        studio.ctx.settings.update({"theme": "system"})
