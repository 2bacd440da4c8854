"""What a new user sees in the browser: the result image shown whole (not cropped by the box, its aspect
kept, a small image enlarged with nearest-neighbour) in the txt2img gallery and its preview, the Extras
result and History's full-size view; and icon buttons that draw a visible glyph without an emoji font
(Debian's Chromium here has none: an emoji on a button would be an empty box)."""

from __future__ import annotations

from typing import Any

import pytest
from PIL import Image

from tests.e2e.conftest import SCREENSHOTS, open_tab, screenshot, set_number

pytestmark = pytest.mark.timeout(300)

#: JS: the rendered geometry of every <img> under a selector, the box that shows it, and its CSS
GEOMETRY = """(sel) => [...document.querySelectorAll(sel)].filter(i => i.getClientRects().length).map(img => {
  const box = img.closest('.grid-wrap, .preview, .block');
  const r = img.getBoundingClientRect(), b = box.getBoundingClientRect(), s = getComputedStyle(img);
  return {natural: [img.naturalWidth, img.naturalHeight], img: [r.left, r.top, r.right, r.bottom],
          box: [b.left, b.top, b.right, b.bottom], fit: s.objectFit, rendering: s.imageRendering}; })"""


def _drawn(shown: dict[str, Any]) -> tuple[float, float, float, float]:
    """The rectangle the picture really covers inside its <img> box (object-fit: contain centres it)."""
    left, top, right, bottom = shown["img"]
    width, height = right - left, bottom - top
    natural_w, natural_h = shown["natural"]
    scale = min(width / natural_w, height / natural_h)
    drawn_w, drawn_h = natural_w * scale, natural_h * scale
    x, y = left + (width - drawn_w) / 2, top + (height - drawn_h) / 2
    return x, y, x + drawn_w, y + drawn_h


def assert_shown_whole(page: Any, selector: str, *, natural: tuple[int, int] = (64, 64)) -> None:
    """Every visible image under ``selector`` lies inside the box that shows it, keeps its aspect, is
    enlarged beyond its natural size and is scaled with nearest-neighbour (it is small)."""
    shown = page.evaluate(GEOMETRY, selector)
    assert shown, f"no visible image under {selector}"
    for item in shown:
        assert tuple(item["natural"]) == natural, item
        left, top, right, bottom = item["img"]
        box_left, box_top, box_right, box_bottom = item["box"]
        # one pixel of slack for sub-pixel layout
        assert (left >= box_left - 1 and top >= box_top - 1 and right <= box_right + 1
                and bottom <= box_bottom + 1), f"{selector}: the image overflows its box (cropped): {item}"
        if item["fit"] != "contain":  # stretched to the element box: the box itself must keep the aspect
            assert item["fit"] == "fill" and abs((right - left) / (bottom - top) - natural[0] / natural[1]) < 0.02, item
        x0, y0, x1, y1 = _drawn(item)
        assert abs((x1 - x0) / (y1 - y0) - natural[0] / natural[1]) < 0.02, item
        assert x1 - x0 >= 2 * natural[0], f"{selector}: a {natural} image should be enlarged to its box: {item}"
        assert item["rendering"] == "pixelated", f"{selector}: a small image is scaled with nearest-neighbour: {item}"


def test_result_image_is_shown_whole(page: Any, studio: Any) -> None:
    page.fill("#txt2img_prompt textarea", "a small yellow triangle on a black background")
    set_number(page, "txt2img_width", "64")
    set_number(page, "txt2img_height", "64")
    set_number(page, "txt2img_steps", "8")
    page.click("#txt2img_generate")  # one image: the layout that cropped it (as wide as the column)
    page.wait_for_selector("#txt2img_status .atelier-progress[data-state=done]", timeout=120_000)
    page.locator("#txt2img_gallery img").first.wait_for(state="visible")
    page.wait_for_function("() => document.querySelector('#txt2img_gallery img').complete")
    assert_shown_whole(page, "#txt2img_gallery .grid-wrap img")
    screenshot(page, "result-whole-grid")

    page.locator("#txt2img_gallery .thumbnail-item").first.click()  # the gallery's own preview
    page.locator("#txt2img_gallery .preview img").first.wait_for(state="visible")
    assert_shown_whole(page, "#txt2img_gallery .preview .media-button img")
    page.keyboard.press("Escape")

    page.click("#txt2img_send_to_extras")  # the Extras result, upscaled by 1: still 64 px
    page.locator("#extras_image img").wait_for(state="visible")
    set_number(page, "extras_upscaling_resize", "1")
    page.click("#extras_generate")
    page.locator("#extras_result img").wait_for(state="visible")
    page.wait_for_function("() => document.querySelector('#extras_result img').complete")
    assert_shown_whole(page, "#extras_result img")

    open_tab(page, "History")  # the full-size view of a History image
    page.fill("#history_query textarea", "yellow triangle")
    page.click("#history_search")
    page.locator("#history_gallery img").first.wait_for(state="visible")
    page.locator("#history_gallery img").first.click()
    page.locator("#history_image img").wait_for(state="visible")
    page.wait_for_function("() => document.querySelector('#history_image img').complete")
    assert_shown_whole(page, "#history_image img")


#: the icon buttons of the header and of the txt2img tab, then of the History and Models tabs
ICON_BUTTONS = {
    None: ["refresh_sd_model_checkpoint", "txt2img_paste", "txt2img_load_png", "txt2img_clear_prompt",
           "txt2img_style_apply", "txt2img_style_create", "txt2img_random_seed", "txt2img_reuse_seed",
           "txt2img_send_to_img2img", "txt2img_send_to_inpaint", "txt2img_send_to_extras"],
    "History": ["history_search", "history_delete"],
    "Models": ["models_refresh", "models_inspect"],
}

#: JS: the visible buttons whose text holds an emoji (drawn only with an emoji font)
EMOJI_BUTTONS = r"""() => [...document.querySelectorAll('button')].filter(b => b.getClientRects().length)
  .filter(b => /\p{Extended_Pictographic}/u.test(b.innerText)).map(b => `${b.id || '?'}: ${b.innerText}`)"""


def _ink(path: str) -> int:
    """Pixels of a screenshot that differ clearly from its most common colour (the button's face)."""
    with Image.open(path) as image:
        rgb = image.convert("RGB")
        colours = rgb.getcolors(maxcolors=rgb.width * rgb.height) or []
    face = max(colours)[1]
    return sum(count for count, colour in colours if sum(abs(a - b) for a, b in zip(colour, face)) > 120)


def test_icon_buttons_draw_a_visible_glyph(page: Any, studio: Any) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for tab, ids in ICON_BUTTONS.items():
        if tab:
            open_tab(page, tab)
        for elem_id in ids:
            button = page.locator(f"#{elem_id}")
            button.wait_for(state="visible")
            icon = button.locator("img.button-icon")
            assert icon.count() == 1, f"#{elem_id} has an SVG icon"
            page.wait_for_function("(id) => { const i = document.querySelector(`#${id} img.button-icon`);"
                                   " return i.complete && i.naturalWidth > 0; }", arg=elem_id)
            width, height = page.evaluate("(id) => { const r = document.querySelector(`#${id} img.button-icon`)"
                                          ".getBoundingClientRect(); return [r.width, r.height]; }", elem_id)
            assert width >= 10 and height >= 10, f"#{elem_id}: its icon is drawn {width}x{height}"
            shot = SCREENSHOTS / f"icon-{elem_id}.png"
            icon.screenshot(path=str(shot))
            assert _ink(str(shot)) >= 12, f"#{elem_id}: its icon draws nothing visible ({shot})"
        assert page.evaluate(EMOJI_BUTTONS) == [], "no button depends on an emoji font"
    open_tab(page, "txt2img")
    screenshot(page, "icon-buttons")
