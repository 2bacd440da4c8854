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
