"""The Models tab's library in a browser: a LoRA listed, inspected (trigger words, notes), hashed with
"Hash all" and its progress, renamed and deleted to the trash; a known model fills the Download form."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from tests.e2e.conftest import choose, open_tab, wait_text

pytestmark = pytest.mark.timeout(300)


def test_library_from_the_page(page: Any, studio: Any) -> None:
    from safetensors.numpy import save_file

    lora_dir = studio.ctx.paths.lora_dir
    lora_dir.mkdir(parents=True, exist_ok=True)
    save_file({"lora_unet_x.lora_down.weight": np.ones((2, 4), np.float32)}, str(lora_dir / "PageToon.safetensors"),
              metadata={"ss_tag_frequency": json.dumps({"1_x": {"pagetoon": 3}})})
    (lora_dir / "PageToon.json").write_text(json.dumps({"notes": "from the page test"}), encoding="utf-8")
    open_tab(page, "Models")
    page.locator("#models_library").get_by_text("All model files").first.click()
    choose(page, "library_kind", "LoRA")
    page.locator("#library_search textarea, #library_search input").fill("PageToon")
    page.click("#library_refresh")
    wait_text(page, "#library_table", "PageToon.safetensors")
    choose(page, "library_pick", "PageToon.safetensors")
    page.click("#library_inspect")
    text = wait_text(page, "#library_details", "pagetoon")
    assert "from the page test" in text and "not hashed yet" in text
    page.click("#library_hash_all")
    wait_text(page, "#library_hash_status", "Hashed", timeout=120_000)
    page.click("#library_inspect")
    assert "not hashed yet" not in wait_text(page, "#library_details", "AutoV2\\s+[0-9a-f]{10}")
    page.locator("#library_new_name textarea, #library_new_name input").fill("PageCartoon")
    page.click("#library_rename")
    wait_text(page, "#library_status", "Renamed to PageCartoon.safetensors")
    assert (lora_dir / "PageCartoon.json").is_file()
    page.click("#library_delete")
    wait_text(page, "#library_status", "Tick")
    page.locator("#library_sure input").check()
    page.click("#library_delete")
    wait_text(page, "#library_status", "Moved to trash")
    assert not (lora_dir / "PageCartoon.safetensors").exists()
    assert list((studio.ctx.paths.data_dir / "trash").rglob("PageCartoon.safetensors"))


def test_known_model_fills_the_download_form(page: Any, studio: Any) -> None:
    open_tab(page, "Models")
    page.locator("#models_download").get_by_text("Download a model").first.click()
    choose(page, "download_known", "FLUX.1 [schnell] (with its VAE and text encoders) — ae.safetensors")
    page.wait_for_function("() => document.querySelector('#download_location textarea, #download_location input')"
                           ".value === 'black-forest-labs/FLUX.1-schnell'")
    assert page.locator("#download_hf_file textarea, #download_hf_file input").input_value() == "ae.safetensors"
    assert "clip_l.safetensors" in page.inner_text("#download_known_note")
    assert not list(studio.ctx.paths.vae_dir.glob("ae.safetensors*"))  # nothing downloads by itself
