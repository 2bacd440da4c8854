"""The page's own scripts (webui/js/*.js) in a real browser: the token counter at the 75-token boundary
and the bracket warning, Ctrl+Up/Down attention editing, Ctrl+Enter / Alt+Enter / Esc, progress in the
tab's title, generate forever (started and stopped by the menu, stopped by Interrupt and by a failed
job), a PNG dropped on the prompt, and ↙ with an empty prompt restoring the last generation."""

from __future__ import annotations

import base64
import io
from typing import Any

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from tests.e2e.conftest import set_number, toast_text, wait_text

pytestmark = pytest.mark.timeout(300)

COUNTER = "#txt2img_prompt_token_counter .atelier-token-count"
FINAL = ("done", "interrupted", "cancelled", "failed")


def _quick_job(page: Any, prompt: str, steps: int = 1) -> None:
    page.fill("#txt2img_prompt textarea", prompt)
    set_number(page, "txt2img_steps", str(steps))
    set_number(page, "txt2img_width", "64")
    set_number(page, "txt2img_height", "64")


def _state(page: Any) -> str:
    return page.evaluate("window.atelier.jobState('txt2img').state")


def _wait_state(page: Any, states: tuple[str, ...], timeout: float = 120_000) -> str:
    page.wait_for_function("(states) => states.includes(window.atelier.jobState('txt2img').state)",
                           arg=list(states), timeout=timeout)
    return _state(page)


def _count_done(page: Any) -> None:
    page.evaluate("() => { window.__done = 0; window.atelier.onJobState(({tab, state}) => {"
                  " if (tab === 'txt2img' && state === 'done') window.__done++; }); }")


def test_scripts_are_loaded_in_name_order(page: Any) -> None:
    names = page.evaluate(
        "[...document.querySelectorAll('script[data-atelier-script]')].map(s => s.dataset.atelierScript)")
    assert names == sorted(names) and names[0] == "atelier.js"
    assert {"token_counter.js", "keys.js", "attention.js", "generate_forever.js", "png_drop.js",
            "job_title.js"} <= set(names)


def test_token_count_changes_at_the_75_token_boundary(page: Any) -> None:
    box = page.locator("#txt2img_prompt textarea")
    wait_text(page, COUNTER, r"^0/75$")
    box.click()
    page.keyboard.type("cat " * 74 + "cat", delay=0)  # 75 tokens
    wait_text(page, COUNTER, r"^75/75$", timeout=15_000)
    page.keyboard.type(" cat")
    wait_text(page, COUNTER, r"^76/150$", timeout=15_000)
    # weights, brackets and LoRA tags are not tokens; BREAK fills the chunk it ends
    box.fill("(cat:1.3) [dog] <lora:anything:0.8>")
    wait_text(page, COUNTER, r"^2/75$", timeout=15_000)
    box.fill("cat BREAK dog")
    wait_text(page, COUNTER, r"^76/150$", timeout=15_000)
    # the negative prompt has its own counter
    page.fill("#txt2img_neg_prompt textarea", "blurry, ugly")
    wait_text(page, "#txt2img_neg_prompt_token_counter .atelier-token-count", r"^3/75$", timeout=15_000)


def test_typing_sends_one_count_after_a_pause_not_one_per_key(page: Any) -> None:
    page.wait_for_function("() => !!document.querySelector('#txt2img_prompt_token_counter')")
    page.evaluate("() => { window.__asked = 0; const ask = window.atelier.ask;"
                  " window.atelier.ask = (op, data) => { if (op === 'token_count') window.__asked++;"
                  " return ask(op, data); }; }")
    page.locator("#txt2img_prompt textarea").click()
    page.keyboard.type("a red square on a blue background", delay=20)
    wait_text(page, COUNTER, r"^7/75$", timeout=15_000)
    assert page.evaluate("window.__asked") <= 2


def test_unbalanced_brackets_are_flagged(page: Any) -> None:
    page.fill("#txt2img_prompt textarea", "a (red square")
    wait_text(page, "#txt2img_prompt_brackets", "not closed", timeout=15_000)
    page.fill("#txt2img_prompt textarea", "a (red) square]")
    wait_text(page, "#txt2img_prompt_brackets", r"'\]' without '\['", timeout=15_000)
    page.fill("#txt2img_prompt textarea", r"a (red) \(square")
    page.wait_for_function("() => document.querySelector('#txt2img_prompt_brackets').innerText === ''")


def test_ctrl_up_and_down_edit_attention(page: Any) -> None:
    box = page.locator("#txt2img_prompt textarea")
    box.fill("a photo of word here")
    box.evaluate("e => { e.focus(); e.setSelectionRange(13, 13); }")  # the caret inside "word"
    page.keyboard.press("Control+ArrowUp")
    assert box.input_value() == "a photo of (word:1.1) here"
    page.keyboard.press("Control+ArrowUp")
    assert box.input_value() == "a photo of (word:1.2) here"
    page.keyboard.press("Control+ArrowDown")
    page.keyboard.press("Control+ArrowDown")
    assert box.input_value() == "a photo of word here"  # unwrapped at 1.0
    box.evaluate("e => e.setSelectionRange(2, 7)")  # a selection: "photo"
    page.keyboard.press("Control+ArrowDown")
    assert box.input_value() == "a (photo:0.9) of word here"
    page.locator("#txt2img_neg_prompt textarea").click()  # Gradio hears the edit as typing
    page.wait_for_timeout(300)
    assert page.evaluate("window.atelier.editAttention('x', 0, 0, 0.1).text") == "(x:1.1)"


def test_ctrl_enter_generates_title_shows_progress_and_esc_interrupts(page: Any, studio: Any) -> None:
    _quick_job(page, "a long job to interrupt", steps=150)
    page.locator("#txt2img_prompt textarea").click()
    page.keyboard.press("Control+Enter")
    page.wait_for_function("() => /^\\[(\\d+%|queued)\\] Atelier$/.test(document.title)", timeout=60_000)
    _wait_state(page, ("running",), timeout=60_000)
    page.wait_for_function("() => /^\\[\\d+%\\] Atelier$/.test(document.title)", timeout=30_000)
    assert page.locator("#txt2img_prompt textarea").input_value().endswith("interrupt")  # no newline added
    job = next(j for j in studio.ctx.queue.list_jobs(limit=20) if j.kind == "txt2img" and not j.done.is_set())
    page.keyboard.press("Escape")
    assert job.done.wait(60), "Esc stopped the job long before its 150 steps"
    assert getattr(job.result, "interrupted", False) or job.state.name == "CANCELLED", job.state
    page.wait_for_function("() => document.title === 'Atelier'", timeout=30_000)  # no progress left


def test_alt_enter_presses_skip(page: Any) -> None:
    page.evaluate("() => { window.__skips = 0; document.querySelector('#txt2img_skip')"
                  ".addEventListener('click', () => window.__skips++); }")
    page.locator("#txt2img_prompt textarea").click()
    page.keyboard.press("Alt+Enter")
    assert page.evaluate("window.__skips") == 1


def test_generate_forever_runs_several_jobs_and_stops(page: Any, studio: Any) -> None:
    _quick_job(page, "a green square, forever")
    _count_done(page)
    before = len(studio.ctx.queue.list_jobs(limit=500))
    page.click("#txt2img_generate", button="right")
    page.locator("#txt2img_generate_menu", has_text="Generate forever").click()
    assert page.is_checked("#txt2img_generate_forever")
    page.wait_for_function("() => window.__done >= 3", timeout=180_000)
    page.click("#txt2img_generate", button="right")
    page.locator("#txt2img_generate_menu", has_text="Cancel generate forever").click()
    assert not page.is_checked("#txt2img_generate_forever")
    page.wait_for_timeout(1000)  # a job started just before the cancel still runs to its end
    for job in studio.ctx.queue.list_jobs(limit=20):
        assert job.done.wait(120)
    _wait_state(page, FINAL)
    done = page.evaluate("window.__done")
    page.wait_for_timeout(2500)
    assert page.evaluate("window.__done") == done and _state(page) in FINAL, "no job after the cancel"
    assert studio.ctx.queue.current() is None
    assert len(studio.ctx.queue.list_jobs(limit=500)) - before >= 3


def test_generate_forever_stops_on_interrupt_and_on_a_failed_job(page: Any, studio: Any) -> None:
    _quick_job(page, "a long job, forever", steps=150)
    page.check("#txt2img_generate_forever")
    _wait_state(page, ("running",), timeout=60_000)
    job = studio.ctx.queue.current()
    page.click("#txt2img_interrupt")
    assert not page.is_checked("#txt2img_generate_forever")
    wait_text(page, "#txt2img_generate_forever_note", "stopped: interrupted")
    assert job is not None and job.done.wait(60)
    page.wait_for_timeout(2000)
    assert studio.ctx.queue.current() is None, "no new job after Interrupt"
    assert not [j for j in studio.ctx.queue.list_jobs(limit=20) if not j.done.is_set()]

    set_number(page, "txt2img_steps", "1")
    set_number(page, "txt2img_width", "68")  # refused: not a multiple of 8
    page.check("#txt2img_generate_forever")
    assert "multiple of 8" in toast_text(page)  # the page shows the error
    wait_text(page, "#txt2img_generate_forever_note", "stopped: the job failed")
    assert not page.is_checked("#txt2img_generate_forever")


def _png_with_infotext(text: str) -> bytes:
    info = PngInfo()
    info.add_text("parameters", text)
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def test_a_dropped_png_fills_the_tab(page: Any) -> None:
    png = _png_with_infotext("a dropped red circle\nNegative prompt: fog\n"
                             "Steps: 7, Sampler: Euler a, CFG scale: 5.5, Seed: 4242, Size: 64x64")
    page.evaluate("""([b64]) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const files = new DataTransfer();
        files.items.add(new File([bytes], "dropped.png", {type: "image/png"}));
        const target = document.querySelector("#txt2img_prompt textarea");
        for (const type of ["dragenter", "dragover", "drop"]) {
          target.dispatchEvent(new DragEvent(type, {dataTransfer: files, bubbles: true, cancelable: true}));
        }
    }""", [base64.b64encode(png).decode()])
    page.wait_for_function(
        "() => document.querySelector('#txt2img_prompt textarea').value === 'a dropped red circle'", timeout=30_000)
    assert page.input_value("#txt2img_neg_prompt textarea") == "fog"
    assert page.input_value("#txt2img_steps input[type=number]") == "7"
    assert page.input_value("#txt2img_seed input") == "4242"
    wait_text(page, "#txt2img_paste_note", "Filled")


def test_paste_with_an_empty_prompt_restores_the_last_generation(page: Any) -> None:
    _quick_job(page, "a remembered blue square", steps=2)
    page.click("#txt2img_generate")
    assert _wait_state(page, FINAL) == "done"
    page.fill("#txt2img_prompt textarea", "")
    set_number(page, "txt2img_steps", "9")
    page.click("#txt2img_paste")
    page.wait_for_function(
        "() => document.querySelector('#txt2img_prompt textarea').value === 'a remembered blue square'")
    assert page.input_value("#txt2img_steps input[type=number]") == "2"
    wait_text(page, "#txt2img_paste_note", "Restored")


def test_a_sound_when_a_job_ends_only_with_the_setting_on(page: Any, studio: Any) -> None:
    page.evaluate("() => { window.__sounds = 0; const Real = window.AudioContext;"
                  " window.AudioContext = function () { window.__sounds++; return new Real(); }; }")
    _quick_job(page, "a quiet job")
    page.click("#txt2img_generate")
    assert _wait_state(page, FINAL) == "done"
    page.wait_for_timeout(1500)  # the page asks the server for the settings after each job
    assert page.evaluate("window.__sounds") == 0  # off by default
    studio.ctx.settings.update({"notification_audio": True})
    try:
        _quick_job(page, "a job that ends with a sound")
        page.click("#txt2img_generate")
        page.wait_for_function("() => window.__sounds === 1", timeout=120_000)
    finally:
        studio.ctx.settings.update({"notification_audio": False})


def test_the_count_includes_the_chosen_styles(page: Any, studio: Any) -> None:
    from tests.e2e.conftest import choose

    assert studio.ctx.styles is not None
    page.fill("#txt2img_prompt textarea", "red, green, blue")
    page.fill("#txt2img_style_name input, #txt2img_style_name textarea", "counted-rgb")
    page.click("#txt2img_style_create")
    wait_text(page, "#txt2img_paste_note", "Saved style")
    page.fill("#txt2img_prompt textarea", "cat")
    wait_text(page, COUNTER, r"^1/75$", timeout=15_000)
    choose(page, "txt2img_styles", "counted-rgb", multiselect=True)
    wait_text(page, COUNTER, r"^7/75$", timeout=15_000)  # "cat, red, green, blue"


FAKE_NOTIFICATIONS = """() => {
    window.__notes = []; window.__asked = 0;
    window.Notification = class { constructor(title, options) { window.__notes.push([title, options.body]); } };
    window.Notification.permission = "default";
    window.Notification.requestPermission = () => { window.__asked++; window.Notification.permission = "granted"; };
    document.hasFocus = () => false;  // the user is in another window
}"""


def test_a_browser_notification_when_a_job_ends_while_the_page_is_away(page: Any, studio: Any) -> None:
    studio.ctx.settings.update({"notification_browser": True})
    try:
        page.reload()  # the page reads the settings when it loads (and after each job)
        page.wait_for_selector("#txt2img_generate", state="visible", timeout=60_000)
        page.evaluate(FAKE_NOTIFICATIONS)
        page.wait_for_timeout(2500)  # the page's first question for its options
        _quick_job(page, "a job that ends with a notification")
        page.click("#txt2img_generate")  # the click is the user's gesture that asks for permission
        page.wait_for_function("() => window.__notes.length === 1", timeout=120_000)
        title, body = page.evaluate("window.__notes[0]")
        assert page.evaluate("window.__asked") == 1
        assert title == "Atelier: txt2img done" and "image(s)" in body
    finally:
        studio.ctx.settings.update({"notification_browser": False})
