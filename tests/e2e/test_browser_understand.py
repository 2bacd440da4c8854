"""The Understand tab in a real browser: upload an image in Caption and get its caption from the offline
default (the shapes classifier), with the progress line ending done; with no image the page says so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modules.world.render import render_scene
from modules.world.spec import Scene, Shape
from tests.e2e.conftest import open_tab, screenshot, set_number, wait_text


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


def test_send_a_generated_image_to_understand_and_check_it(page: Any, studio: Any) -> None:
    """txt2img → "understand" under the gallery → Check against the image's own prompt (its infotext came along)."""
    page.fill("#txt2img_prompt textarea", "a large red circle on a blue background")
    set_number(page, "txt2img_width", "64")
    set_number(page, "txt2img_height", "64")
    set_number(page, "txt2img_steps", "8")
    page.click("#txt2img_generate")
    page.wait_for_selector("#txt2img_status .atelier-progress[data-state=done]", timeout=120_000)
    page.locator("#txt2img_gallery img").first.wait_for(state="visible")
    page.click("#txt2img_send_to_understand")
    page.locator("#understand_image img").wait_for(state="visible", timeout=30_000)
    assert page.get_by_role("tab", name="Understand", exact=True).first.get_attribute("aria-selected") == "true"
    if studio.ctx.interrogator.find() is None:
        return
    open_tab(page, "Check")
    page.check("#understand_check_own input")
    page.click("#understand_check_run")
    wait_text(page, "#understand_check_status", "Done in|Failed")
    view = page.inner_text("#understand_check_output")
    assert "Score:" in view and "a large red circle on a blue background" in view


def test_chat_with_an_image_is_kept_and_listed(page: Any, studio: Any, tmp_path: Path) -> None:
    if studio.ctx.interrogator.find() is None:
        return
    picture = tmp_path / "square.png"
    render_scene(Scene(background="white", shapes=(Shape(shape="square", colour="green", position="centre",
                                                         size="large"),)), size=64).save(picture)
    open_tab(page, "Understand")
    open_tab(page, "Chat")
    page.locator("#understand_chat_image input[type=file]").set_input_files(str(picture))
    page.locator("#understand_chat_image img").wait_for(state="visible")
    page.fill("#understand_chat_text textarea", "What shape is this?")
    page.click("#understand_chat_send")
    wait_text(page, "#understand_chat_status", "Done in")
    wait_text(page, "#understand_chatbot", "square")
    page.locator("#understand_chat_images img").first.wait_for(state="visible")
    assert page.input_value("#understand_chat_text textarea") == ""
    assert studio.ctx.understanding.chats.list()[0].title == "What shape is this?"
    width = page.evaluate("() => document.querySelector('#understand_chat_images img').getBoundingClientRect().width")
    assert 0 < width < 200, "the chat's images are thumbnails, not one image cut off by the strip"
    screenshot(page, "understand-chat")


def test_classify_an_uploaded_image(page: Any, studio: Any, tmp_path: Path) -> None:
    """Classify (issue 26 point 5): the image at the left, the offline default classifier, a label table."""
    picture = tmp_path / "star.png"
    render_scene(Scene(background="white", shapes=(Shape(shape="star", colour="yellow", position="centre",
                                                         size="large"),)), size=64).save(picture)
    open_tab(page, "Understand")
    page.locator("#understand_image input[type=file]").set_input_files(str(picture))
    page.locator("#understand_image img").wait_for(state="visible")
    open_tab(page, "Classify")
    page.click("#understand_classify_run")
    wait_text(page, "#understand_classify_status", "Done in|Failed")
    table = wait_text(page, "#understand_classify_table", "shape=")
    assert "shape=star" in table and "colour=yellow" in table, table
    assert "atelier-shapes-vit@" in page.inner_text("#understand_classify_note")
    screenshot(page, "understand-classify")


def test_index_the_gallery_and_find_similar_from_history(page: Any, studio: Any) -> None:
    """Understand → Search → Index the gallery, then History → Find similar: the Search sub-tab opens with the
    most similar image first (the picked image's twin, turned a little) and its score."""
    if studio.ctx.interrogator.find() is None:
        return
    folder = studio.ctx.paths.outputs_dir / "txt2img-images" / "2026-01-03"
    folder.mkdir(parents=True, exist_ok=True)
    for name, turn in (("twin-a", {}), ("twin-b", {"angle": 7.0, "scale": 0.93})):
        shape = Shape(shape="hexagon", colour="orange", position="centre", size="large", **turn)
        render_scene(Scene(background="black", shapes=(shape,)), size=64).save(folder / f"{name}.png")
    open_tab(page, "Understand")
    open_tab(page, "Search")
    page.click("#understand_search_index")
    wait_text(page, "#understand_search_status", "Indexed", timeout=240_000)  # a cold start imports transformers
    assert "atelier-shapes-vit@" in page.inner_text("#understand_search_note")
    open_tab(page, "History")
    page.fill("#history_query textarea", "twin-a")
    page.click("#history_search")
    wait_text(page, "#history_status", "1 image")
    page.locator("#history_gallery img").first.click()
    wait_text(page, "#history_path", "twin-a")
    page.click("#history_find_similar")
    wait_text(page, "#understand_search_status", "Done in|Failed", timeout=120_000)
    assert page.get_by_role("tab", name="Search", exact=True).first.get_attribute("aria-selected") == "true"
    note = wait_text(page, "#understand_search_note", "like txt2img-images/2026-01-03/twin-a.png")
    assert "atelier-shapes-vit" in note
    page.locator("#understand_search_gallery img").first.wait_for(state="visible")
    first = page.locator("#understand_search_gallery .caption-label").first.inner_text()
    assert "twin-b" in first, first
    screenshot(page, "understand-search")
