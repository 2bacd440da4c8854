"""Parameter recall (an infotext fills every field it names), the ui-config.json per-field defaults,
and the shape of the studio: one tab per capability, none empty."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import gradio as gr
import pytest

from modules.app_context import create_app_context
from modules.flags import parse_flags
from webui.params import Fields, paste_updates, request_values
from webui.ui_config import UiDefaults

INFOTEXT = """a red circle, (bold:1.2)
Negative prompt: blurry
Steps: 12, Sampler: DPM++ 2M, Schedule type: Exponential, CFG scale: 6.5, Seed: 424242, Size: 64x96, Model hash: abc123, \
Model: shapes, Denoising strength: 0.4, Hires upscale: 1.5, Hires upscaler: Latent, Clip skip: 2, Lora hashes: "x: 1", \
Version: atelier-0.1.0"""


@pytest.fixture
def fields() -> Iterator[Fields]:
    with gr.Blocks():
        f = Fields()
        f.add("prompt", gr.Textbox())
        f.add("negative_prompt", gr.Textbox())
        f.add("sampler_name", gr.Dropdown(["Euler a", "DPM++ 2M"], value="Euler a"))
        f.add("scheduler", gr.Dropdown(["Automatic", "Exponential"], value="Automatic"))
        f.add("steps", gr.Slider(1, 150, value=20))
        f.add("width", gr.Slider(0, 2048, value=0))
        f.add("height", gr.Slider(0, 2048, value=0))
        f.add("cfg_scale", gr.Slider(0, 30, value=7))
        f.add("seed", gr.Number(value=-1))
        f.add("enable_hr", gr.Checkbox(value=False))
        f.add("hr_scale", gr.Slider(1, 4, value=2))
        f.add("denoising_strength", gr.Slider(0, 1, value=0.7))
        f.add("clip_skip", gr.Slider(1, 12, value=1))
        f.add("batch_size", gr.Slider(1, 8, value=1))
        yield f


def _values(fields: Fields, updates: list[Any]) -> dict[str, Any]:
    return {name: u["value"] for name, u in zip(fields.names, updates) if u.get("__type__") == "update" and "value" in u}


def test_an_infotext_fills_every_field_it_names(fields: Fields) -> None:
    updates, note = paste_updates(fields, INFOTEXT)
    assert _values(fields, updates) == {
        "prompt": "a red circle, (bold:1.2)", "negative_prompt": "blurry", "sampler_name": "DPM++ 2M",
        "scheduler": "Exponential", "steps": 12, "width": 64, "height": 96, "cfg_scale": 6.5, "seed": 424242,
        "enable_hr": True, "hr_scale": 1.5, "denoising_strength": 0.4, "clip_skip": 2}
    assert "batch_size" not in _values(fields, updates)
    assert "Filled 13 field(s)" in note and "model shapes" in note and "Lora hashes" in note


def test_send_seed_and_size_settings_and_unknown_choices(fields: Fields) -> None:
    updates, _ = paste_updates(fields, INFOTEXT, send_seed=False, send_size=False)
    got = _values(fields, updates)
    assert "seed" not in got and "width" not in got and got["steps"] == 12
    odd = INFOTEXT.replace("DPM++ 2M", "DPM adaptive")
    updates, note = paste_updates(fields, odd)
    assert "sampler_name" not in _values(fields, updates) and "sampler_name=DPM adaptive" in note
    updates, note = paste_updates(fields, "   ")
    assert _values(fields, updates) == {} and "Nothing to read" in note


def test_request_values_convert_slider_floats_and_native_size() -> None:
    got = request_values({"steps": 20.0, "width": 0.0, "height": 64.0, "cfg_scale": 7.0, "seed": None,
                          "denoising_strength": 1.0})
    assert got == {"steps": 20, "width": None, "height": 64, "cfg_scale": 7.0, "seed": -1, "denoising_strength": 1.0}
    assert isinstance(got["steps"], int) and isinstance(got["cfg_scale"], float)


def test_ui_config_overrides_and_is_completed(tmp_path: Path) -> None:
    path = tmp_path / "ui-config.json"
    path.write_text(json.dumps({"txt2img/Sampling steps/value": 33, "txt2img/Sampling steps/maximum": 80,
                                "txt2img/CFG Scale/value": "not a number",
                                "txt2img/Sampling method/value": "No such sampler"}))
    ui = UiDefaults(path)
    with gr.Blocks():
        steps = ui.make(gr.Slider, "txt2img", "Sampling steps", minimum=1, maximum=150, value=20, step=1)
        cfg = ui.make(gr.Slider, "txt2img", "CFG Scale", minimum=0, maximum=30, value=7.0, step=0.5)
        sampler = ui.make(gr.Dropdown, "txt2img", "Sampling method", choices=["Euler a", "Euler"], value="Euler a")
    assert (steps.value, steps.maximum) == (33, 80)
    assert cfg.value == 7.0 and sampler.value == "Euler a"  # wrong type / not a choice: the built-in default
    ui.save()
    saved = json.loads(path.read_text())
    assert saved["txt2img/Sampling steps/value"] == 33 and saved["txt2img/CFG Scale/step"] == 0.5
    assert saved["txt2img/CFG Scale/value"] == "not a number"  # the user's entries are kept as written


def _elem(demo: gr.Blocks, elem_id: str) -> Any:
    return next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == elem_id)


def test_the_studio_has_a_tab_per_capability_and_reads_ui_config(tmp_path: Path) -> None:
    from webui.app import build_ui

    (tmp_path / "ui-config.json").write_text(json.dumps({"txt2img/Sampling steps/value": 7,
                                                         "img2img/Denoising strength/value": 0.5}))
    ctx = create_app_context(parse_flags(["--data-dir", str(tmp_path), "--skip-load-model-at-start"]))
    try:
        demo = build_ui(ctx)
    finally:
        ctx.close()
    tabs = [b.label for b in demo.blocks.values() if isinstance(b, gr.Tab)]
    for name in ("txt2img", "img2img", "Inpaint", "Outpaint", "Extras", "Upscale", "PNG Info", "History", "Models",
                 "Settings"):
        assert name in tabs
    assert _elem(demo, "txt2img_steps").value == 7
    assert _elem(demo, "img2img_denoising_strength").value == 0.5
    assert _elem(demo, "txt2img_hr") is not None and _elem(demo, "txt2img_enable_hr").value is False
    for elem_id in ("txt2img_interrupt", "txt2img_skip", "txt2img_reuse_seed", "txt2img_styles",
                    "img2img_inpaint_editor", "img2img_mask_upload", "history_delete", "models_inspect",
                    "setting_show_progress_every_n_steps", "pnginfo_send_to_txt2img"):
        _elem(demo, elem_id)
    written = json.loads((tmp_path / "ui-config.json").read_text())
    assert written["txt2img/Sampling steps/value"] == 7 and "txt2img/Batch count/maximum" in written
