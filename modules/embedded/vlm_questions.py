"""Questions and answers about shapes-world scenes: the conversations the shapes VLM is trained and measured on.

Every question type has a few phrasings (the first one is the canonical phrasing the benchmark asks). Answers are
the world's own words (``top left``, ``small``, ``2``, ``yes``), so an answer is right when it equals the label.
Two-shape scenes are asked only what is defined for the whole scene (count, background, describe): "the shape"
would be ambiguous there.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from modules.world.captions import full_caption
from modules.world.sampling import scene_labels
from modules.world.spec import POSITIONS, SHAPE_COLOURS, SHAPES, Scene

#: question type -> phrasings ("{shape}" is filled with the scene's shape)
QUESTIONS: dict[str, tuple[str, ...]] = {
    "shape": ("what shape is this?", "what shape is it?", "what shape is in the image?", "which shape is it?",
              "what is the shape?", "what kind of shape is it?", "what shape do you see?", "which shape?"),
    "colour": ("what colour is the shape?", "what color is the shape?", "what colour is it?",
               "what colour is the {shape}?", "what is the colour of the shape?", "which colour is the shape?",
               "what colour?"),
    "background": ("what colour is the background?", "what is the background colour?", "what color is the background?",
                   "what is the colour of the background?"),
    "position": ("where is the shape?", "where is it?", "where is the {shape}?", "what is the position of the shape?",
                 "in which position is the shape?"),
    "size": ("what size is the shape?", "is the shape small or large?", "is it small or large?",
             "how big is the shape?", "is the shape big or small?"),
    "count": ("how many shapes are there?", "how many shapes?", "how many shapes are in the image?",
              "how many shapes can you see?", "count the shapes."),
    "yes_no": ("is it a {colour} {shape}?", "is this a {colour} {shape}?", "is the {shape} {colour}?",
               "is the shape {colour}?", "is it a {shape}?"),
    "describe": ("describe the image.", "describe this image.", "what is in the image?", "caption the image."),
}
#: the types a two-shape scene is asked about
SCENE_TYPES: tuple[str, ...] = ("count", "background", "describe")
SINGLE_TYPES: tuple[str, ...] = tuple(QUESTIONS)
#: how the turn after a second image refers back to the first (or the second) image
IMAGE_REFERENCES: tuple[str, ...] = ("first", "second")
#: a question about a newly shown image that repeats the last question's type ("{question}": any phrasing of it)
FOLLOW_UPS: tuple[str, ...] = ("and this one?", "what about this one?", "and this one: {question}",
                               "and this one, {question}")


@dataclass(frozen=True)
class QA:
    kind: str
    question: str
    answer: str


def _yes_no(scene: Scene, rng: random.Random, phrasing: str) -> QA:
    """A yes/no question naming a shape and/or a colour; half of the time one named thing is wrong."""
    labels = scene_labels(scene)
    shape, colour = labels["shape"], labels["colour"]
    if rng.random() < 0.5:
        if "{shape}" in phrasing and ("{colour}" not in phrasing or rng.random() < 0.5):
            shape = rng.choice([s for s in SHAPES if s != shape])
        else:
            colour = rng.choice([c for c in SHAPE_COLOURS if c != colour])
    answer = "yes" if (shape, colour) == (labels["shape"], labels["colour"]) else "no"
    return QA("yes_no", phrasing.format(shape=shape, colour=colour), answer)


def answer_for(scene: Scene, kind: str) -> str:
    """The right answer to a question of type ``kind`` (not yes_no) about ``scene``."""
    if kind == "describe":  # shapes in reading order (top to bottom, left to right), so the order is learnable
        order = sorted(scene.shapes, key=lambda s: POSITIONS[s.position][::-1])
        return full_caption(Scene(background=scene.background, shapes=tuple(order)))
    return scene_labels(scene)[kind]


def question_for(scene: Scene, kind: str, rng: random.Random | None = None) -> QA:
    """A question of type ``kind`` about ``scene`` with its answer (the canonical phrasing without ``rng``)."""
    phrasings = QUESTIONS[kind]
    phrasing = rng.choice(phrasings) if rng is not None else phrasings[0]
    if kind == "yes_no":
        return _yes_no(scene, rng or random.Random(0), phrasing)
    labels = scene_labels(scene)
    return QA(kind, phrasing.format(shape=labels["shape"], colour=labels["colour"]), answer_for(scene, kind))


def kinds_for(scene: Scene) -> tuple[str, ...]:
    """The question types that are defined for ``scene``."""
    return SCENE_TYPES if len(scene.shapes) > 1 else SINGLE_TYPES


def referring(qa: QA, which: str) -> QA:
    """``qa`` asked about the ``which`` ("first"/"second") image of the conversation."""
    question = qa.question.rstrip("?.")
    return QA(qa.kind, f"{question} in the {which} image?", qa.answer)


def follow_up(qa: QA, rng: random.Random) -> QA:
    """``qa`` (about a newly shown image) asked as a follow-up of the same question type."""
    phrasing = rng.choice(FOLLOW_UPS)
    return QA(qa.kind, phrasing.format(question=qa.question), qa.answer)


def vocabulary() -> list[str]:
    """Every word the questions and answers use (the tokenizer's word list, besides its special tokens)."""
    import re

    from modules.world.spec import BACKGROUND_COLOURS, SIZES

    words: set[str] = set()
    texts = [p for ps in QUESTIONS.values() for p in ps] + list(SHAPES) + list(SHAPE_COLOURS) + \
        list(BACKGROUND_COLOURS) + list(POSITIONS) + list(SIZES) + list(IMAGE_REFERENCES) + list(FOLLOW_UPS) + [':']
    texts += ["in the image", "a an and on background at the in corner middle yes no 0 1 2 3"]
    for text in texts:
        words.update(re.findall(r"\w+|[^\w\s]", text.replace("{shape}", "").replace("{colour}", "").replace("{question}", "")))
    # every word full_caption writes (position phrases included)
    from modules.world.captions import _POSITION_PHRASES

    for phrases in _POSITION_PHRASES.values():
        for phrase in phrases:
            words.update(phrase.split())
    return sorted(words)
