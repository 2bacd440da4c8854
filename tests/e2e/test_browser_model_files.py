"""The Models tab's file actions in a browser: a Checkpoint Merger run from the page ends with the new
checkpoint listed, and a download from a local server lands in its folder."""

from __future__ import annotations

import http.server
import threading
from typing import Any

import pytest

from tests.e2e.conftest import choose, open_tab, wait_text

pytestmark = pytest.mark.timeout(300)


def test_merge_from_the_page(page: Any, studio: Any) -> None:
    open_tab(page, "Models")
    page.locator("#models_merge").get_by_text("Checkpoint Merger").first.click()
    title = studio.ctx.catalog.list()[0].path.stem  # the option's text starts with it (a hash may follow)
    for elem in ("merge_primary", "merge_secondary"):
        choose(page, elem, title)
    page.locator("#merge_output textarea, #merge_output input").fill("page-merge")
    page.click("#merge_start")
    wait_text(page, "#merge_status", "Done", timeout=120_000)
    assert studio.ctx.catalog.find("page-merge") is not None


def test_download_from_the_page(page: Any, studio: Any) -> None:
    payload = b"not really a model, but bytes to fetch" * 1000

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        open_tab(page, "Models")
        page.locator("#models_download").get_by_text("Download a model").first.click()
        choose(page, "download_kind", "vae")
        page.locator("#download_location textarea, #download_location input").fill(
            f"http://127.0.0.1:{httpd.server_port}/files/tiny-vae.safetensors")
        page.click("#download_start")
        wait_text(page, "#download_status", "Done", timeout=60_000)
        assert (studio.ctx.paths.vae_dir / "tiny-vae.safetensors").read_bytes() == payload
    finally:
        httpd.shutdown()


def test_backend_picker_and_memory_line(page: Any, studio: Any) -> None:
    """The Models tab's "Backend and memory": device and memory mode shown, a backend saved for the checkpoint."""
    open_tab(page, "Models")
    page.locator("#models_backend").get_by_text("Backend and memory").first.click()
    wait_text(page, "#models_backend_status", "Device.*CPU.*float32")
    assert "Memory mode in force" in page.inner_text("#models_backend_status")
    choose(page, "models_backend_choice", "ONNX Runtime")
    page.click("#models_backend_save")
    wait_text(page, "#models_backend_message", "runs on ONNX Runtime")
    name = studio.ctx.models.active.info.name
    assert studio.ctx.settings.current.backend_by_model == {name: "onnx"}
    choose(page, "models_backend_choice", "Default")
    page.click("#models_backend_save")
    wait_text(page, "#models_backend_message", "the default")
    assert studio.ctx.settings.current.backend_by_model == {}
