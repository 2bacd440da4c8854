"""The shipped shapes VLM (models/VLM/atelier-shapes-vlm) loads like any user VLM and answers world renders
right through the local VLM path, keeps the first image's answer after a second image is shown, streams, and
(as the offline default) refuses words outside its vocabulary; its training data labels the answers only."""

from __future__ import annotations

from pathlib import Path

import pytest

from modules.understanding.backends.base import Message
from modules.world.render import render_scene
from modules.world.spec import Scene, Shape

FOLDER = Path(__file__).resolve().parent.parent / "models" / "VLM" / "atelier-shapes-vlm"


def picture(shape: str, colour: str, background: str = "white", position: str = "centre", size: str = "large"):
    return render_scene(Scene(background=background, shapes=(Shape(shape=shape, colour=colour, position=position,
                                                                   size=size),)), size=64)


@pytest.fixture(scope="module")
def backend():
    from modules.understanding.backends.local_vlm import LocalVLMBackend

    if not (FOLDER / "model.safetensors").is_file():
        pytest.fail("the shapes VLM is not shipped: run python -m modules.embedded.train_vlm")
    return LocalVLMBackend(FOLDER)


def ask(backend, question: str, image) -> str:
    return backend.chat([Message("user", question, (0,))], [image], max_tokens=24).text


def test_answers_world_renders(backend):
    heart = picture("heart", "red", "blue", "top left", "small")
    assert ask(backend, "What shape is this?", heart) == "heart"
    assert ask(backend, "What colour is the shape?", heart) == "red"
    assert ask(backend, "What colour is the background?", heart) == "blue"
    assert ask(backend, "Where is the shape?", heart) == "top left"
    assert ask(backend, "What size is the shape?", heart) == "small"
    assert ask(backend, "How many shapes are there?", heart) == "1"
    square = picture("square", "yellow", "black", "bottom right")
    assert ask(backend, "What shape is this?", square) == "square"
    two = render_scene(Scene(background="gray", shapes=(Shape("circle", "red", "left", "small"),
                                                        Shape("star", "blue", "right", "small"))), size=64)
    assert ask(backend, "How many shapes are there?", two) == "2"


def test_two_image_chat_keeps_the_first_answer(backend):
    images = [picture("hexagon", "purple"), picture("triangle", "green", "yellow")]
    messages = [Message("user", "What shape is this?", (0,))]
    first = backend.chat(messages, images, max_tokens=8).text
    assert first == "hexagon"
    messages += [Message("assistant", first), Message("user", "What shape is this?", (1,))]
    pieces: list[str] = []
    second = backend.chat(messages, images, max_tokens=8, on_text=pieces.append)
    assert second.text == "triangle" and "".join(pieces).strip() == "triangle"
    messages += [Message("assistant", second.text), Message("user", "What shape is this in the first image?")]
    assert backend.chat(messages, images, max_tokens=8).text == "hexagon"


def test_offline_default_refuses_unknown_words_and_compares_yes_no(backend):
    from modules.understanding.backends.shapes import CannotAnswer
    from modules.understanding.backends.shapes_vlm import ShapesVLMBackend

    default = ShapesVLMBackend(backend)
    with pytest.raises(CannotAnswer, match="'who', 'painted'"):
        default.chat([Message("user", "Who painted this?", (0,))], [picture("circle", "red")])
    assert default.chat([Message("user", "What colour is it?", (0,))], [picture("circle", "orange")]).text == "orange"
    square = picture("square", "yellow", "black", "bottom right")
    assert default.chat([Message("user", "Is it a yellow square?", (0,))], [square]).text == "yes"
    assert default.chat([Message("user", "Is the square green?", (0,))], [square]).text == "no"


def test_training_labels_are_the_answers_only():
    import random

    from modules.embedded.vlm_data import IGNORE, encode, sample_conversation
    from modules.embedded.vlm_model import build_processor, image_tokens
    from modules.embedded.vlm_questions import vocabulary

    processor = build_processor(vocabulary())
    rng = random.Random(5)
    conversation = next(c for c in (sample_conversation(rng, 1, i) for i in range(50)) if len(c.scenes) == 2)
    ids, labels = encode(processor, conversation, image_tokens())
    assert len(ids) == len(labels) and ids.count(processor.tokenizer.convert_tokens_to_ids("<image>")) == 2 * image_tokens()
    answers = [m["content"][-1]["text"] for m in conversation.messages if m["role"] == "assistant"]
    learnt = processor.tokenizer.decode([t for t in labels if t != IGNORE])
    assert [part.strip() for part in learnt.split("<|end|>")] == [*answers, ""]
