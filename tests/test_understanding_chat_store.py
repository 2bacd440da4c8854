"""Chats of the Understand tab in the data dir: saved atomically with their images as PNG beside the JSON,
listed newest first, reopened by a new store (a restart), turned into ``understand_chat`` messages with the
earlier images in context; ids that could name another path are refused; a damaged file is left out."""

from __future__ import annotations

import base64
import io
import json
import time

import pytest
from PIL import Image

from modules.understanding.chat_store import ChatNotFound, ChatStore
from modules.understanding.tasks.chat import ChatRequest, conversation


def picture(colour: str) -> Image.Image:
    return Image.new("RGB", (16, 16), colour)


def test_chat_saved_listed_and_reopened_after_a_restart(tmp_path):
    store = ChatStore(tmp_path)
    chat = store.new(model="atelier-shapes")
    store.add_message(chat, "user", "What shape is this?", [picture("red")])
    store.add_message(chat, "assistant", "a circle")
    store.add_message(chat, "user", "And this one?", [picture("blue")])
    store.save(chat)
    folder = tmp_path / "understanding" / "chats"
    assert sorted(p.name for p in folder.iterdir()) == [f"{chat.id}-1.png", f"{chat.id}-2.png", f"{chat.id}.json"]
    stored = json.loads((folder / f"{chat.id}.json").read_text())
    assert stored["messages"][0]["images"] == [f"{chat.id}-1.png"] and stored["title"] == "What shape is this?"

    reopened = ChatStore(tmp_path).load(chat.id)  # a new store: what a restarted studio sees
    assert reopened.model == "atelier-shapes" and [m.text for m in reopened.messages] == [
        "What shape is this?", "a circle", "And this one?"]
    assert reopened.as_pairs()[0] == ("user", "[image] What shape is this?")
    with Image.open(folder / reopened.messages[2].images[0]) as image:
        assert image.getpixel((0, 0)) == (0, 0, 255)

    # the stored chat as a request: both images in context, in order, as data URIs
    messages = ChatStore(tmp_path).request_messages(reopened)
    request = ChatRequest(model="atelier-shapes", messages=messages)
    turns, images = conversation(request)
    assert [t.role for t in turns] == ["user", "assistant", "user"] and len(images) == 2
    assert images[0].getpixel((0, 0)) == (255, 0, 0) and images[1].getpixel((0, 0)) == (0, 0, 255)
    url = messages[0]["content"][0]["image_url"]["url"]
    assert Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).size == (16, 16)


def test_listing_newest_first_delete_and_damage(tmp_path):
    store = ChatStore(tmp_path)
    assert store.list() == []
    first = store.new()
    store.add_message(first, "user", "first chat")
    store.save(first)
    time.sleep(0.01)
    second = store.new()
    store.add_message(second, "user", "second chat", [picture("green")])
    store.save(second)
    assert [c.title for c in store.list()] == ["second chat", "first chat"]
    (store.root / "0123456789ab.json").write_text("{not json")
    (store.root / "notes.json").write_text("{}")
    assert [c.id for c in store.list()] == [second.id, first.id]  # damaged and foreign files left out
    with pytest.raises(ChatNotFound, match="cannot be read"):
        store.load("0123456789ab")
    store.delete(second.id)
    assert [c.id for c in store.list()] == [first.id] and not list(store.root.glob(f"{second.id}-*.png"))
    assert not list(store.root.glob("*.tmp"))


@pytest.mark.parametrize("bad", ["../secrets", "", "ABCDEF012345", "0123456789ab/../x", "0123456789abc", None])
def test_ids_that_are_not_the_stores_own_are_refused(tmp_path, bad):
    store = ChatStore(tmp_path)
    with pytest.raises(ChatNotFound):
        store.load(bad)
    with pytest.raises(ChatNotFound):
        store.image("../../etc/passwd")
