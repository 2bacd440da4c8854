"""Fixtures for end-to-end tests in a real browser: Playwright (Python) driving Debian's Chromium.

The tests skip, with the reason, when Chromium (``/usr/bin/chromium``, or ``$ATELIER_CHROMIUM``) or the
``playwright`` package is missing; ``./test.sh`` installs Chromium with apt-get when it can. Never
``playwright install``: the browser is the system's. Screenshots go to ``test-artifacts/screenshots/``
(git-ignored); a few are copied to ``docs/screenshots/`` for the README.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.helpers.server import RunningServer, StudioFactory

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
CHROMIUM = os.environ.get("ATELIER_CHROMIUM", "/usr/bin/chromium")
EMBEDDED = REPO / "models" / "Stable-diffusion" / "atelier-shapes-v1.safetensors"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _chromium_or_skip() -> str:
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)) and not shutil.which(CHROMIUM):
        pytest.skip(f"browser tests need Chromium at {CHROMIUM}: run ./test.sh as root (it installs Debian's "
                    "chromium with apt-get) or `apt-get install chromium`")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("browser tests need the playwright package (pip install -r requirements-test.txt)")
    return CHROMIUM


@pytest.fixture(scope="session")
def browser_context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    executable = _chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=executable, headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 1000}, device_scale_factor=1)
        context.set_default_timeout(30_000)
        yield context
        context.close()


@pytest.fixture(scope="module")
def studio(studio_factory: StudioFactory, browser_context: Any) -> RunningServer:
    """A real studio (UI + API) on a free port with the default model loaded: the embedded default model
    (where it ships, listed from the shipped folder) when it has been trained, else a tiny random-weight SD 1.x.
    One per test module: Gradio reads its cache folder from the environment, so a studio must not outlive
    the next one built in the same process (with pytest-xdist a worker runs other modules in between)."""
    if EMBEDDED.is_file():
        return studio_factory(["--api"], with_ui=True, models=(), load=EMBEDDED, name="e2e-studio")
    return studio_factory(["--api"], with_ui=True, name="e2e-studio")


@pytest.fixture
def page(browser_context: Any, studio: RunningServer) -> Iterator[Any]:
    """A fresh page of the studio; fails the test on any JavaScript error in it."""
    tab = browser_context.new_page()
    messages: list[str] = []
    tab.on("pageerror", lambda exc: messages.append(str(exc)))
    tab.goto(studio.base_url + "/")
    tab.wait_for_selector("#txt2img_generate", state="visible", timeout=60_000)
    yield tab
    tab.close()
    assert not messages, f"JavaScript errors in the page: {messages}"


def screenshot(page: Any, name: str, *, full_page: bool = False) -> Path:
    """Save ``test-artifacts/screenshots/<name>.png``; with ``ATELIER_DOCS_SCREENSHOTS=1`` the README's
    shots are refreshed too (``docs/screenshots/``, scaled down and palette-compressed)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    if os.environ.get("ATELIER_DOCS_SCREENSHOTS") == "1" and name in DOC_SHOTS:
        _small_copy(path, DOCS_SCREENSHOTS / path.name)
    return path


#: the screenshots the README shows
DOC_SHOTS = ("txt2img-generated", "txt2img-progress", "txt2img-queued", "history", "pnginfo", "error-message",
             "extra-networks", "txt2img-progress-after-reload")
DOCS_SCREENSHOTS = REPO / "docs" / "screenshots"


def _small_copy(source: Path, target: Path, width: int = 1000) -> None:
    from PIL import Image

    with Image.open(source) as image:
        image = image.convert("RGB")
        if image.width > width:
            image = image.resize((width, round(image.height * width / image.width)), Image.Resampling.LANCZOS)
        target.parent.mkdir(parents=True, exist_ok=True)
        image.quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            target, optimize=True)


def set_number(page: Any, elem_id: str, value: str) -> None:
    """Type into the number box of a slider/number field (Gradio commits it on blur)."""
    box = page.locator(f"#{elem_id} input[type=number]").first
    box.fill(value)
    box.blur()


def choose(page: Any, elem_id: str, option: str, *, multiselect: bool = False) -> None:
    """Pick the first option of a Gradio dropdown that contains ``option`` (open it, click the option)."""
    page.locator(f"#{elem_id} input").first.click()
    page.locator("li[role=option]", has_text=option).first.click()
    if multiselect:  # the choice becomes a token beside the input
        page.locator(f"#{elem_id} .token", has_text=option).first.wait_for()
        page.keyboard.press("Escape")
    else:
        page.wait_for_function("([sel, want]) => document.querySelector(sel).value.startsWith(want)",
                               arg=[f"#{elem_id} input", option])


def open_tab(page: Any, name: str) -> None:
    page.get_by_role("tab", name=name, exact=True).first.click()


def wait_text(page: Any, selector: str, pattern: str, timeout: float = 60_000) -> str:
    """Wait until the element's text matches the JS regex ``pattern``; returns the text."""
    page.wait_for_function("([sel, pat]) => { const e = document.querySelector(sel);"
                           " return !!e && new RegExp(pat).test(e.innerText); }",
                           arg=[selector, pattern], timeout=timeout)
    return page.inner_text(selector)


def toast_text(page: Any, timeout: float = 30_000) -> str:
    """The text of the error toast the page shows."""
    toast = page.locator(".toast-body.error").first
    toast.wait_for(state="visible", timeout=timeout)
    return toast.inner_text()
