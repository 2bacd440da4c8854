"""Training conversations for the shapes VLM and their token batches.

A conversation is a list of chat messages (the shape the processor's chat template reads) and the scenes of its
images in order. One-image conversations ask one or two questions about the image; two-image conversations ask
about the first image, then show the second and ask about it, then ask again about the first (or the second) image
by name, so the answer about the first image has to stay right after the second is shown.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from modules.embedded.vlm_questions import IMAGE_REFERENCES, QA, follow_up, kinds_for, question_for, referring
from modules.world.dataset import scene_rng
from modules.world.sampling import sample_scene
from modules.world.spec import Scene

IGNORE = -100


@dataclass(frozen=True)
class Conversation:
    messages: tuple[dict[str, Any], ...]
    scenes: tuple[Scene, ...]


def _user(qa: QA, with_image: bool) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"type": "image"}] if with_image else []
    return {"role": "user", "content": [*parts, {"type": "text", "text": qa.question}]}


def _assistant(qa: QA) -> dict[str, Any]:
    return {"role": "assistant", "content": [{"type": "text", "text": qa.answer}]}


@dataclass(frozen=True)
class Focus:
    """With probability ``prob``, a question's type is drawn from ``kinds`` (those defined for the scene)."""

    kinds: tuple[str, ...] = ()
    prob: float = 0.0


def _ask(scene: Scene, rng: random.Random, focus: Focus = Focus()) -> QA:
    kinds = kinds_for(scene)
    focused = [k for k in focus.kinds if k in kinds]
    if focused and rng.random() < focus.prob:
        kinds = tuple(focused)
    return question_for(scene, rng.choice(kinds), rng)


def sample_conversation(rng: random.Random, scene_seed: int, index: int, two_image_prob: float = 0.35,
                        focus: Focus = Focus()) -> Conversation:
    """One conversation; its scenes are drawn from ``(scene_seed, index)``."""
    first = sample_scene(scene_rng(scene_seed, index, "vlm-a"))
    if rng.random() >= two_image_prob:
        turns = [_ask(first, rng, focus)]
        if rng.random() < 0.3:
            turns.append(_ask(first, rng, focus))
        messages: list[dict[str, Any]] = []
        for number, qa in enumerate(turns):
            messages += [_user(qa, number == 0), _assistant(qa)]
        return Conversation(tuple(messages), (first,))
    second = sample_scene(scene_rng(scene_seed, index, "vlm-b"))
    a, b = _ask(first, rng, focus), _ask(second, rng, focus)
    if rng.random() < 0.35 and a.kind in kinds_for(second) and a.kind != "yes_no":  # "and this one?"
        b = follow_up(question_for(second, a.kind, rng), rng)
    which = rng.choice(IMAGE_REFERENCES)
    again = referring(_ask(first if which == "first" else second, rng, focus), which)
    messages = [_user(a, True), _assistant(a), _user(b, True), _assistant(b), _user(again, False), _assistant(again)]
    return Conversation(tuple(messages), (first, second))


def encode(processor: Any, conversation: Conversation, image_tokens: int) -> tuple[list[int], list[int]]:
    """Token ids of the templated conversation (each image expanded to ``image_tokens`` tokens) and the labels:
    the assistant's answers and their end token; everything else ``IGNORE``."""
    tokenizer = processor.tokenizer
    image = processor.image_token
    ids: list[int] = []
    labels: list[int] = []
    for message in conversation.messages:
        text = processor.apply_chat_template([message], add_generation_prompt=False, tokenize=False)
        piece = tokenizer(text.replace(image, image * image_tokens), add_special_tokens=False)["input_ids"]
        ids += piece
        if message["role"] == "assistant":
            labels += [IGNORE] + piece[1:]  # the role token is given, the rest is learnt
        else:
            labels += [IGNORE] * len(piece)
    return ids, labels


def pad_batch(encoded: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, Any]:
    """Right-padded input ids, attention mask and labels as tensors."""
    import torch

    width = max(len(ids) for ids, _ in encoded)
    input_ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    labels = torch.full((len(encoded), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, (ids, target) in enumerate(encoded):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(target)] = torch.tensor(target)
        mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}
