"""The minimal Gradio txt2img page runs on the same queue: generate through the page's own
event (via gradio_client), and a bad request comes back as a readable message."""

from __future__ import annotations

import pytest
from gradio_client import Client
from PIL import Image


@pytest.fixture(scope="module")
def ui_server(studio_factory):
    return studio_factory([], with_ui=True, name="ui")


def test_page_serves(ui_server) -> None:
    with ui_server.client() as http:
        page = http.get("/")
        assert page.status_code == 200 and "<html" in page.text.lower()


def test_generate_through_the_page(ui_server) -> None:
    client = Client(ui_server.base_url + "/", verbose=False)
    gallery, status, infotext = client.predict(
        "a red circle", "", "Euler", "Automatic", 2, 64, 64, 1, 2, 7, 42, api_name="/run")
    assert len(gallery) == 3 and gallery[0]["caption"] == "grid", "the batch's grid first (setting return_grid)"
    assert Image.open(gallery[0]["image"]).size == (128, 64)
    first = Image.open(gallery[1]["image"])
    assert first.size == (64, 64)
    assert "Seed: 42, Size: 64x64" in infotext
    assert "2 image(s)" in status
    saved = list((ui_server.ctx.paths.outputs_dir / "txt2img-images").rglob("*-42.png"))
    assert saved, "the page's images are saved to outputs/"


def test_bad_request_is_a_readable_message(ui_server) -> None:
    client = Client(ui_server.base_url + "/", verbose=False)
    with pytest.raises(Exception) as info:
        client.predict("x", "", "No Such Sampler", "Automatic", 2, 64, 64, 1, 1, 7, 1, api_name="/run")
    assert "No Such Sampler" in str(info.value)
