"""The extra networks browser in a real browser: a LoRA and an embedding placed in the data dir appear as
cards (the LoRA with its picture), a click inserts them into the prompt that had the focus, a second click
takes them out, the metadata editor saves A1111's ``<name>.json`` and the next click uses the preferred
weight and the activation text; search and the folder filter narrow the cards."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.e2e.conftest import open_tab, screenshot, set_number, wait_text
from tests.test_extra_networks import KOHYA, write_embedding, write_image, write_lora

pytestmark = pytest.mark.timeout(300)

LORA_CARD = "#{tab}_en_cards .atelier-en-card[data-id='sub/Detail.safetensors']"
EMBEDDING_CARD = "#{tab}_en_cards .atelier-en-card[data-id='bad-hands.safetensors']"


@pytest.fixture(scope="module")
def studio(studio_factory: Any, browser_context: Any) -> Any:
    """A studio with a tiny checkpoint not loaded yet (the browser lists files, it needs no model), a LoRA, its
    picture and an embedding in the data dir's model folders."""

    def prepare(data: Path, ckpt_dir: Path) -> None:
        models = data / "models"
        write_lora(models / "Lora" / "sub" / "Detail.safetensors", KOHYA)
        write_image(models / "Lora" / "sub" / "Detail.preview.png", colour="blue")
        write_lora(models / "Lora" / "Plain.safetensors")
        write_embedding(models / "embeddings" / "bad-hands.safetensors")

    return studio_factory(["--api"], with_ui=True, load=False, prepare=prepare, name="e2e-networks",
                          models=("sd1",))


def _open(page: Any, tab: str) -> None:
    page.locator(f"#{tab}_extra_networks .label-wrap").first.click()
    page.locator(LORA_CARD.format(tab=tab)).wait_for(timeout=30_000)


def _prompt(page: Any, tab: str, which: str = "prompt") -> str:
    return page.input_value(f"#{tab}_{which} textarea")


def _wait_prompt(page: Any, tab: str, value: str, which: str = "prompt") -> None:
    page.wait_for_function("([sel, want]) => document.querySelector(sel).value === want",
                           arg=[f"#{tab}_{which} textarea", value], timeout=15_000)


def test_lora_and_embedding_cards_insert_into_the_prompt(page: Any, studio: Any) -> None:
    tab = "txt2img"
    _open(page, tab)
    card = page.locator(LORA_CARD.format(tab=tab))
    assert card.locator("img").get_attribute("src").startswith("data:image/jpeg;base64,")  # Detail.preview.png
    plain = page.locator(f"#{tab}_en_cards .atelier-en-card[data-id='Plain.safetensors']")
    assert plain.locator(".atelier-en-placeholder").count() == 1  # no picture: a placeholder
    page.fill(f"#{tab}_prompt textarea", "a castle")
    card.locator(".atelier-en-name").click()
    _wait_prompt(page, tab, "a castle <lora:Detail:1>")
    card.locator(".atelier-en-name").click()  # a second click takes it out, as in A1111
    _wait_prompt(page, tab, "a castle")
    # the embedding goes into the prompt that had the focus last: here the negative prompt
    page.locator(f"#{tab}_en_kind label", has_text="Textual Inversion").click()
    embedding = page.locator(EMBEDDING_CARD.format(tab=tab))
    embedding.wait_for(timeout=15_000)
    page.locator(f"#{tab}_neg_prompt textarea").click()
    embedding.click()
    _wait_prompt(page, tab, "bad-hands", which="neg_prompt")
    assert _prompt(page, tab) == "a castle"
    # back to the LoRA cards: the positive prompt was focused last now
    page.locator(f"#{tab}_prompt textarea").click()
    page.locator(f"#{tab}_en_kind label", has_text="Lora").first.click()
    page.locator(LORA_CARD.format(tab=tab)).locator(".atelier-en-name").click()
    _wait_prompt(page, tab, "a castle <lora:Detail:1>")
    page.evaluate("document.querySelector('#txt2img_prompt').scrollIntoView({block: 'start'})")
    screenshot(page, "extra-networks")
    # the server sees the inserted text (what Generate would send), not only the text box: save it as a style
    page.fill(f"#{tab}_style_name input, #{tab}_style_name textarea", "en-check")
    page.click(f"#{tab}_style_create")
    wait_text(page, f"#{tab}_paste_note", "Saved style 'en-check'")
    style = studio.ctx.styles.get("en-check")
    assert (style.prompt, style.negative_prompt) == ("a castle <lora:Detail:1>", "bad-hands")


def test_metadata_editor_saves_json_and_the_next_click_uses_it(page: Any, studio: Any) -> None:
    tab = "img2img"
    open_tab(page, "img2img")
    _open(page, tab)
    page.locator(LORA_CARD.format(tab=tab)).locator(".atelier-en-edit").click()
    page.locator(f"#{tab}_en_description textarea").wait_for(state="visible", timeout=15_000)
    page.get_by_text("Training metadata (from the file, read-only)").first.click()
    wait_text(page, f"#{tab}_en_training", r"ss_output_name\s+add_detail")
    page.fill(f"#{tab}_en_description textarea", "Sharper details")
    page.fill(f"#{tab}_en_activation textarea", "intricate")
    page.fill(f"#{tab}_en_negative textarea", "lowres")
    weight = page.locator(f"#{tab}_en_weight input")
    weight.fill("0.6")
    weight.blur()
    page.click(f"#{tab}_en_save")
    wait_text(page, f"#{tab}_en_status", r"Saved models/Lora/sub/Detail\.json")
    stored = json.loads((studio.root / "data" / "models" / "Lora" / "sub" / "Detail.json").read_text("utf-8"))
    assert stored["preferred weight"] == 0.6 and stored["activation text"] == "intricate"
    assert stored["negative text"] == "lowres"
    assert stored["description"] == "Sharper details" and stored["sd version"] == "SD1"
    card = page.locator(LORA_CARD.format(tab=tab))
    page.wait_for_function("(sel) => (document.querySelector(sel)?.dataset.prompt || '').includes('0.6')",
                           arg=LORA_CARD.format(tab=tab), timeout=15_000)
    assert card.get_attribute("title") == "Sharper details"
    page.fill(f"#{tab}_neg_prompt textarea", "blurry")
    page.locator(f"#{tab}_prompt textarea").click()
    card.locator(".atelier-en-name").click()
    _wait_prompt(page, tab, "<lora:Detail:0.6> intricate")
    _wait_prompt(page, tab, "blurry lowres", which="neg_prompt")  # the negative text goes with the tag
    card.locator(".atelier-en-name").click()
    _wait_prompt(page, tab, "")
    _wait_prompt(page, tab, "blurry", which="neg_prompt")  # and is taken out with it


def test_search_and_folder_filter(page: Any, studio: Any) -> None:
    tab = "txt2img"
    _open(page, tab)
    cards = page.locator(f"#{tab}_en_cards .atelier-en-card")
    assert cards.count() == 2
    assert page.get_attribute(f"#{tab}_en_refresh", "title") == "Rescan the model folders"
    page.fill(f"#{tab}_en_search input, #{tab}_en_search textarea", "add_detail")  # the LoRA's alias
    page.wait_for_function("(sel) => document.querySelectorAll(sel).length === 1",
                           arg=f"#{tab}_en_cards .atelier-en-card", timeout=15_000)
    assert cards.first.get_attribute("data-id") == "sub/Detail.safetensors"
    page.fill(f"#{tab}_en_search input, #{tab}_en_search textarea", "nothing-like-this")
    wait_text(page, f"#{tab}_en_cards", "No Lora matches the search")


def test_checkpoint_card_switches_the_model(page: Any, studio: Any) -> None:
    tab = "txt2img"
    _open(page, tab)
    page.locator(f"#{tab}_en_kind label", has_text="Checkpoints").click()
    name = studio.checkpoints[0].name
    card = page.locator(f"#{tab}_en_cards .atelier-en-card[data-id='{name}']")
    card.wait_for(timeout=15_000)
    assert studio.ctx.models.active is None
    card.locator(".atelier-en-name").click()
    wait_text(page, f"#{tab}_en_status", f"Loaded {name}", timeout=120_000)
    assert studio.ctx.models.active is not None and studio.ctx.models.active.info.path.name == name
    # the checkpoint picker at the top follows
    page.wait_for_function("(want) => document.querySelector('#setting_sd_model_checkpoint input').value"
                           ".startsWith(want)", arg=name, timeout=30_000)


def test_selected_result_becomes_the_cards_picture(page: Any, studio: Any) -> None:
    from tests.helpers.server import load_and_wait

    if studio.ctx.models.active is None:
        load_and_wait(studio.ctx, str(studio.checkpoints[0]))
    tab = "txt2img"
    page.fill(f"#{tab}_prompt textarea", "a red circle")
    for field, value in (("steps", "2"), ("width", "64"), ("height", "64")):
        set_number(page, f"{tab}_{field}", value)
    page.click(f"#{tab}_generate")
    page.locator(f"#{tab}_gallery img").first.wait_for(timeout=120_000)
    _open(page, tab)
    plain = page.locator(f"#{tab}_en_cards .atelier-en-card[data-id='Plain.safetensors']")
    assert plain.locator(".atelier-en-placeholder").count() == 1
    plain.locator(".atelier-en-edit").click()
    page.locator(f"#{tab}_en_description textarea").wait_for(state="visible", timeout=15_000)
    page.click(f"#{tab}_en_replace_preview")
    wait_text(page, f"#{tab}_en_status", r"Saved models/Lora/Plain\.preview\.png")
    plain.locator("img").wait_for(timeout=15_000)
    saved = studio.root / "data" / "models" / "Lora" / "Plain.preview.png"
    with Image.open(saved) as image:
        assert image.size == (64, 64)
