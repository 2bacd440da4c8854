"""The last generation's parameters per user (<data>/last-params.json), and the page filling them back
into a tab (webui/recall.py, used by ↙ with an empty prompt)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
from PIL import Image

from modules.generation.last_params import FILE_NAME, MAX_OWNERS, recall, remember


def test_each_owner_keeps_their_own_last_generation(tmp_path: Path) -> None:
    remember(tmp_path, "webui:ann", "txt2img", {"prompt": "a red cube", "steps": 12, "styles": ("a", "b")})
    remember(tmp_path, "webui:bob", "img2img", {"prompt": "a blue ball", "denoising_strength": 0.5})
    remember(tmp_path, "webui:ann", "txt2img", {"prompt": "a red cube, later", "steps": 13})
    ann, bob = recall(tmp_path, "webui:ann"), recall(tmp_path, "webui:bob")
    assert ann is not None and bob is not None
    assert (ann.tab, ann.fields) == ("txt2img", {"prompt": "a red cube, later", "steps": 13})
    assert (bob.tab, bob.fields) == ("img2img", {"prompt": "a blue ball", "denoising_strength": 0.5})
    assert recall(tmp_path, "webui:carl") is None
    # kept on disk (a restart reads the same file), written whole: no temporary file is left
    data = json.loads((tmp_path / FILE_NAME).read_text(encoding="utf-8"))
    assert data["version"] == 1 and set(data["owners"]) == {"webui:ann", "webui:bob"}
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []


def test_only_plain_values_are_kept(tmp_path: Path) -> None:
    remember(tmp_path, "webui", "img2img", {"prompt": "x", "image": Image.new("RGB", (4, 4)), "unit": {"a": 1},
                                            "seed": -1, "enable_hr": False, "hr_upscaler": None,
                                            "huge": "y" * 100_000})
    last = recall(tmp_path, "webui")
    assert last is not None
    assert last.fields == {"prompt": "x", "seed": -1, "enable_hr": False, "hr_upscaler": None}


def test_an_unreadable_file_is_no_last_generation_and_is_replaced(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).write_text("{not json", encoding="utf-8")
    assert recall(tmp_path, "webui") is None
    remember(tmp_path, "webui", "txt2img", {"prompt": "fresh"})
    assert recall(tmp_path, "webui").fields == {"prompt": "fresh"}


def test_the_oldest_owners_are_dropped_past_the_limit(tmp_path: Path) -> None:
    for n in range(MAX_OWNERS + 3):
        remember(tmp_path, f"webui:u{n}", "txt2img", {"prompt": str(n)}, now=1000.0 + n)
    owners = json.loads((tmp_path / FILE_NAME).read_text(encoding="utf-8"))["owners"]
    assert len(owners) == MAX_OWNERS and "webui:u0" not in owners and f"webui:u{MAX_OWNERS + 2}" in owners


def test_submissions_at_once_keep_every_owner(tmp_path: Path) -> None:
    threads = [threading.Thread(target=remember, args=(tmp_path, f"webui:u{n}", "txt2img", {"prompt": str(n)}))
               for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(recall(tmp_path, f"webui:u{n}").fields == {"prompt": str(n)} for n in range(12))


def test_the_tab_is_filled_from_the_last_generation(tmp_path: Path) -> None:
    from webui.params import Fields
    from webui.recall import last_params_updates

    ctx = SimpleNamespace(paths=SimpleNamespace(data_dir=tmp_path))
    request = SimpleNamespace(username="ann")
    with gr.Blocks():
        fields = Fields()
        fields.add("prompt", gr.Textbox())
        fields.add("steps", gr.Slider(1, 150))
        fields.add("sampler_name", gr.Dropdown(["Euler", "DPM++ 2M"]))
        fields.add("resize_mode", gr.Radio(["Just resize", "Crop and resize"], type="index"))
        fields.add("mask_blur", gr.Slider(0, 64))
    updates, note, found = last_params_updates(ctx, fields, request)
    assert not found and "generate once first" in note and all(u == gr.skip() for u in updates)

    remember(tmp_path, "webui:ann", "img2img", {"prompt": "a cat", "steps": 9, "sampler_name": "Gone sampler",
                                                "resize_mode": 1})
    updates, note, found = last_params_updates(ctx, fields, request)
    assert found
    values = [u.get("value") if isinstance(u, dict) else None for u in updates]
    assert values == ["a cat", 9, None, "Crop and resize", None]  # mask_blur: not in the last generation
    assert "Restored 3 field(s)" in note and "sampler_name=Gone sampler" in note
    # another user has none
    assert not last_params_updates(ctx, fields, SimpleNamespace(username="bob"))[2]
