"""The Extensions tab in a real browser: the shipped example extension is listed as new (nothing of it runs),
Approve shows what approving means, confirming loads it and the list shows its new state and scripts."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import choose, open_tab, screenshot, wait_text

pytestmark = pytest.mark.timeout(300)


def test_approve_the_example_extension(page: Any, studio: Any) -> None:
    assert studio.ctx.scripts.registry.get("Vignette") is None  # shipped, not approved: not loaded
    open_tab(page, "Extensions")
    wait_text(page, "#extensions_table", r"example[\s\S]*new: waits for approval")
    choose(page, "extensions_pick", "example")
    wait_text(page, "#extensions_detail", r"example")
    page.click("#extensions_approve")
    consent = wait_text(page, "#extensions_consent", r"Approving")
    assert "trust" in consent and "example" in consent
    screenshot(page, "extensions-approve")
    page.click("#extensions_confirm_approve")
    status = wait_text(page, "#extensions_status", r"Approved example")
    assert "Vignette" in status and "Restart" in status
    wait_text(page, "#extensions_table", r"example[\s\S]*approved \(running\)")
    assert page.locator("#extensions_confirm_box").is_hidden()
    assert studio.ctx.scripts.registry.get("Vignette") is not None  # loaded without a restart
    screenshot(page, "extensions-approved")

    page.click("#extensions_disable")
    wait_text(page, "#extensions_status", r"Disabled example")
    wait_text(page, "#extensions_table", r"example[\s\S]*disabled")
    assert studio.ctx.scripts.registry.get("Vignette") is None


def test_script_dropdown_shows_the_chosen_scripts_widgets(browser_context: Any, studio_factory: Any) -> None:
    srv = studio_factory(["--api", "--enable-extension", "example"], with_ui=True, name="e2e-scripts")
    tab = browser_context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        tab.goto(srv.base_url + "/")
        tab.wait_for_selector("#txt2img_generate", state="visible", timeout=60_000)
        group = tab.locator("#txt2img_script_example_prompt_variations")
        assert group.is_hidden()
        choose(tab, "txt2img_script_list", "Example: prompt variations")
        group.wait_for(state="visible")
        assert tab.input_value("#txt2img_script_example_prompt_variations_suffixes textarea") == "red, blue"
        tab.locator("#txt2img_script_vignette").click()  # the always-on script's accordion
        tab.locator("#txt2img_script_vignette_strength").wait_for(state="visible")
        tab.locator("#txt2img_script_list").scroll_into_view_if_needed()
        screenshot(tab, "txt2img-scripts")
        choose(tab, "txt2img_script_list", "None")
        group.wait_for(state="hidden")
        open_tab(tab, "Example")  # the extension's own tab (ui_tabs)
        tab.locator("#example_steps_seen").wait_for(state="visible")
    finally:
        tab.close()
    assert not errors, errors
