"""The Understand tab in a real browser: upload an image in Caption and get its caption from the offline
default (the shapes classifier), with the progress line ending done; with no image the page says so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modules.world.render import render_scene
from modules.world.spec import Scene, Shape
from tests.e2e.conftest import open_tab, screenshot, wait_text


def test_caption_an_uploaded_image(page: Any, studio: Any, tmp_path: Path) -> None:
    picture = tmp_path / "circle.png"
    render_scene(Scene(background="blue", shapes=(Shape(shape="circle", colour="red", position="centre",
                                                        size="large"),)), size=64).save(picture)
    open_tab(page, "Understand")
    page.click("#understand_caption_run")  # nothing uploaded yet
    wait_text(page, "#understand_caption_status", "upload an image first")
    page.locator("#understand_image input[type=file]").set_input_files(str(picture))
    page.locator("#understand_image img").wait_for(state="visible")
    page.click("#understand_caption_run")
    if studio.ctx.interrogator.find() is None:  # the classifier is not installed: the page says where it looked
        wait_text(page, "#understand_caption_status", "Model not found")
        return
    wait_text(page, "#understand_caption_status", "Done in")
    caption = page.locator("#understand_caption_output textarea").input_value()
    assert caption == "a large red circle in the centre on a blue background"
    screenshot(page, "understand-caption")
