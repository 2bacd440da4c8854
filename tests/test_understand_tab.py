"""The Understand tab (issue 26): in the studio's Gradio config after Extras with its sub-tabs, send-to buttons
and events; a caption, an answer, an extraction (valid and invalid), a check against the image's own prompt,
a two-image chat kept in the data dir and reopened, and a batch preview, each through the tab's event
handlers as the page calls them (submitted to the job queue and followed)."""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from modules.world.render import render_scene
from modules.world.spec import Scene, Shape

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    from modules.app_context import create_app_context
    from modules.flags import parse_flags

    data = tmp_path_factory.mktemp("studio")
    context = create_app_context(parse_flags(["--data-dir", str(data), "--skip-load-model-at-start",
                                              "--use-cpu", "all"]))
    yield context
    context.close()


@pytest.fixture(scope="module")
def tab(ctx):
    from webui.understand_tab import build_understand_tab

    with gr.Blocks():
        return build_understand_tab(ctx)


def upload(folder: Path, name: str, shape: str = "circle", colour: str = "red", prompt: str | None = None) -> str:
    """An image as the page hands it to an event: a file path (Gradio's upload cache in the studio)."""
    folder.mkdir(parents=True, exist_ok=True)
    picture = render_scene(Scene(background="blue", shapes=(Shape(shape=shape, colour=colour, position="centre",
                                                                  size="large"),)), size=64)
    info = PngInfo()
    if prompt:
        info.add_text("parameters", f"{prompt}\nSteps: 2, Sampler: Euler, Seed: 1, Size: 64x64")
    path = folder / name
    picture.save(path, pnginfo=info)
    return str(path)


def last(events):
    items = list(events)
    assert items, "the handler yielded nothing"
    return items


def test_the_app_config_has_the_understand_tab(ctx) -> None:
    from webui.app import build_ui

    config = build_ui(ctx).get_config_file()
    labels = [c.get("props", {}).get("label") for c in config["components"]]
    tabs = [c["props"].get("label") for c in config["components"] if c.get("type") in ("tabitem", "tab")]
    top = [c["props"].get("id") for c in config["components"] if c.get("type") in ("tabitem", "tab")
           and c["props"].get("id") in ("txt2img", "img2img", "extras", "understand", "history")]
    assert list(dict.fromkeys(top)) == ["txt2img", "img2img", "extras", "understand", "history"]  # after Extras
    for label in ("Caption", "Ask", "Extract", "Check", "Chat", "Batch"):
        assert label in labels or label in tabs, label
    ids = {c.get("props", {}).get("elem_id") for c in config["components"]}
    assert {"understand_image", "understand_caption_run", "understand_caption_output", "understand_chatbot",
            "understand_batch_preview", "understand_batch_stop", "understand_extract_json",
            "txt2img_send_to_understand", "img2img_send_to_understand", "history_send_to_understand"} <= ids
    by_id = {c["id"]: c.get("props", {}).get("elem_id") for c in config["components"]}
    wired = {by_id.get(t[0]) for dep in config["dependencies"] for t in dep.get("targets", [])}
    assert {"understand_caption_run", "understand_ask_run", "understand_extract_run", "understand_check_run",
            "understand_chat_send", "understand_batch_write", "txt2img_send_to_understand"} <= wired
    choices = next(c["props"]["choices"] for c in config["components"]
                   if c.get("props", {}).get("elem_id") == "understand_caption_backend")
    assert [value for _, value in choices][:2] == ["default", "remote"] and "ocr" not in [v for _, v in choices]


def test_caption_through_the_tab_event(ctx, tab, tmp_path) -> None:
    image = upload(tmp_path, "a.png")
    steps = last(tab.caption(image, "detailed", "default", "", False, True, "", 50))
    status, caption, note = steps[-1]
    assert 'data-state="done"' in status
    assert caption == "a large red circle in the centre on a blue background"
    assert "default:atelier-shapes" in note
    tags = last(tab.caption(image, "tags", "default", "", True, True, "simple*", 3))[-1][1]
    assert tags.split(", ") == ["red_circle", "circle", "red"]
    refused = last(tab.caption(None, "short", "default", "", False, True, "", 50))
    assert len(refused) == 1 and "Not started: upload an image first" in refused[0][0]
    remote = last(tab.caption(image, "short", "remote", "", False, True, "", 50))[-1][0]
    assert 'data-state="failed"' in remote and "no OpenAI-compatible service is set" in remote


def test_caption_streamed_from_a_remote_service_with_its_usage(ctx, tab, tmp_path, monkeypatch) -> None:
    from tests.helpers.fake_openai import FakeOpenAI

    image = upload(tmp_path, "r.png")
    monkeypatch.setenv("TEST_VLM_KEY", "sk-tab-secret")
    with FakeOpenAI(answer="A red circle on blue.") as fake:
        ctx.settings.update({"vlm_api_base_url": fake.url("ok"), "vlm_api_model": "fake-vlm",
                             "vlm_api_key_env": "TEST_VLM_KEY"})
        try:
            steps = last(tab.caption(image, "short", "remote", "", False, True, "", 50))
        finally:
            ctx.settings.update({"vlm_api_base_url": "", "vlm_api_model": ""})
    status, caption, note = steps[-1]
    assert caption == "A red circle on blue." and "tokens: 17 in, 5 out" in note and "backend: remote" in note
    assert fake.requests[-1]["body"]["stream"] is True  # the page follows the answer as it streams
    assert all("sk-tab-secret" not in str(step) for step in steps)


def test_send_to_understand_picks_the_selected_file() -> None:
    from webui.understand_tab import gallery_pick

    assert gallery_pick([], 0) is None and gallery_pick(None, 0) is None
    gallery = [("/cache/a.png", "seed 1"), ("/cache/b.png", "seed 2")]
    assert gallery_pick(gallery, 1) == "/cache/b.png" and gallery_pick(gallery, 7) == "/cache/a.png"
    assert gallery_pick([({"path": "/cache/c.png"}, "x")], 0) == "/cache/c.png"


def test_ask_extract_and_check(ctx, tab, tmp_path) -> None:
    image = upload(tmp_path, "b.png", "square", "green", prompt="a green square on a blue background")
    status, answer, note = last(tab.ask(image, "What shape is it?", True, "default"))[-1]
    assert 'data-state="done"' in status and "square" in answer.lower()

    # an own schema that is not JSON is refused before queueing; an answer that does not validate is shown raw
    refused = last(tab.extract(image, "my JSON Schema", "{not json", "", "default"))
    assert "not valid JSON" in refused[0][0]
    schema = json.dumps({"type": "object", "required": ["total"], "properties": {"total": {"type": "number"}}})
    status, note, data, raw = last(tab.extract(image, "my JSON Schema", schema, "", "default"))[-1]
    assert 'data-state="done"' in status and data is None and 'data-kind="error"' in note and "not valid" in note

    status, view = last(tab.check(image, "", True, "default"))[-1]
    assert 'data-state="done"' in status and "**Score:" in view and "green square" in view
    status, view = last(tab.check(image, "a red circle", False, "default"))[-1]
    assert "**missing:**" in view and "red" in view.split("**missing:**")[1].split("\n")[0]


def test_chat_two_images_kept_and_reopened(ctx, tab, tmp_path) -> None:
    first = upload(tmp_path, "c.png", "circle", "red")
    second = upload(tmp_path, "d.png", "triangle", "yellow")
    steps = last(tab.chat_send("", "atelier-shapes", first, "What colour is the shape?"))
    chat_id, messages, images, cleared, text, status, _ = steps[-1]
    assert chat_id and 'data-state="done"' in status and cleared is None and text == ""
    assert messages[0]["content"].startswith("[image 1]") and messages[-1]["role"] == "assistant"
    assert "red" in messages[-1]["content"].lower()
    chat_id2, messages, images, *_ = last(tab.chat_send(chat_id, "atelier-shapes", second,
                                                         "And this one: which shape?"))[-1]
    assert chat_id2 == chat_id and len(messages) == 4 and len(images) == 2
    assert "triangle" in messages[-1]["content"].lower()
    # the last job saw both images (earlier images stay in context)
    job = [j for j in ctx.queue.list_jobs(limit=10) if j.kind == "understand_chat"][0]
    parts = [p for m in job.request.messages if not isinstance(m.content, str) for p in m.content]
    assert sum(1 for p in parts if p.type == "image_url") == 2

    # kept in the data dir: a fresh store (a restart) lists and reopens it
    folder = ctx.paths.data_dir / "understanding" / "chats"
    assert (folder / f"{chat_id}.json").is_file() and len(list(folder.glob(f"{chat_id}-*.png"))) == 2
    listed = tab.chat_list()
    assert any(value == chat_id for _, value in listed["choices"])
    opened_id, opened, pictures, model, status = tab.chat_open(chat_id)
    assert opened_id == chat_id and opened == messages and len(pictures) == 2 and model == "atelier-shapes"
    assert 'data-kind="error"' in tab.chat_open("../../etc")[-1]


def test_batch_preview_through_the_tab(ctx, tab) -> None:
    folder = ctx.paths.data_dir / "sets" / "tab"
    upload(folder, "one.png", "star", "purple")
    upload(folder, "two.png", "heart", "yellow")
    status, rows = last(tab.batch("sets/tab", True, False, 0, "tags", "default", "", False, True, "", 50))[-1]
    assert 'data-state="done"' in status and "2 of 2 captioned and previewed" in status
    assert [row[:2] for row in rows] == [["one.png", "previewed"], ["two.png", "previewed"]]
    assert not list(folder.glob("*.txt"))
    status, rows = last(tab.batch("sets/tab", False, False, 1, "tags", "default", "", False, True, "", 50))[-1]
    assert "1 of 1 captioned and written" in status and (folder / "one.txt").is_file()
    refused = last(tab.batch("/etc", True, False, 0, "tags", "default", "", False, True, "", 50))
    assert "outside the folders this studio may use" in refused[-1][0]


def test_batch_stop_interrupts_with_a_summary(ctx, tab) -> None:
    import threading
    import time

    folder = ctx.paths.data_dir / "sets" / "long"
    for index in range(40):
        upload(folder, f"{index:02d}.png", "circle", "red")
    shown: list = []
    worker = threading.Thread(target=lambda: shown.extend(
        tab.batch("sets/long", False, False, 0, "tags", "default", "", False, True, "", 50)))
    worker.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(folder.glob("*.txt")):
        time.sleep(0.05)
    assert "Interrupting" in tab.batch_stop(None)
    worker.join(120)
    status, rows = shown[-1]
    assert 'data-state="interrupted"' in status and "interrupted: run again to resume" in status
    written = len(list(folder.glob("*.txt")))
    assert 0 < written < 40 and len(rows) == written
    assert "Nothing to stop" in tab.batch_stop(None)
