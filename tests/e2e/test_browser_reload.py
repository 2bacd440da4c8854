"""Progress that survives a reload (issue 35.5): a page reloaded during a long job finds it again (its
progress bar, then its image in the gallery), and a page that was away while its job finished shows the
result when it comes back. Which job is chosen: modules/jobs/reattach.py (tests/test_webui_reattach.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import screenshot, set_number, wait_text

pytestmark = pytest.mark.timeout(300)


def _start(page: Any, prompt: str, steps: str, count: str = "1") -> None:
    page.fill("#txt2img_prompt textarea", prompt)
    set_number(page, "txt2img_width", "64")
    set_number(page, "txt2img_height", "64")
    set_number(page, "txt2img_steps", steps)
    set_number(page, "txt2img_batch_count", count)
    page.click("#txt2img_generate")


def test_reload_during_a_long_job_shows_its_progress_then_its_image(page: Any, studio: Any) -> None:
    _start(page, "a blue square on a red background", "150", "2")
    wait_text(page, "#txt2img_status", r"step \d+/150")
    page.reload()
    page.wait_for_selector("#txt2img_generate", state="visible", timeout=60_000)
    # the reloaded page follows the same job: the bar comes back without a click
    text = wait_text(page, "#txt2img_status", r"step \d+/150 · batch \d/2", timeout=60_000)
    assert "%" in text, text
    screenshot(page, "txt2img-progress-after-reload")
    page.wait_for_selector("#txt2img_status .atelier-progress[data-state=done]", timeout=240_000)
    page.locator("#txt2img_gallery img").first.wait_for(state="visible")
    infotext = page.input_value("#txt2img_infotext textarea")
    assert infotext.startswith("a blue square on a red background") and "Steps: 150" in infotext, infotext
    assert studio.ctx.queue.current() is None


def test_a_result_that_finished_while_the_page_was_away_is_shown(page: Any, studio: Any) -> None:
    _start(page, "a green triangle seen while away", "60")
    wait_text(page, "#txt2img_status", r"step \d+/60")
    job = studio.ctx.queue.current()
    assert job is not None and job.owner == "webui"
    page.goto("about:blank")
    assert job.done.wait(120) and job.result is not None, job.error
    page.goto(studio.base_url + "/")
    page.wait_for_selector("#txt2img_generate", state="visible", timeout=60_000)
    page.wait_for_selector("#txt2img_status .atelier-progress[data-state=done]", timeout=60_000)
    page.locator("#txt2img_gallery img").first.wait_for(state="visible")
    assert page.input_value("#txt2img_infotext textarea").startswith("a green triangle seen while away")
    # shown once: a later reload with nothing running leaves the tab as a fresh page has it
    page.reload()
    page.wait_for_selector("#txt2img_generate", state="visible", timeout=60_000)
    page.wait_for_timeout(1500)
    assert page.locator("#txt2img_status .atelier-progress").count() == 0
