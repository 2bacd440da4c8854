"""Exact-match scores of a shapes VLM folder on held-out renders, asked through the studio's local VLM backend
(processor, chat template, generation: the path Ask and Chat take).

Held-out: the scenes are drawn from their own salt (``vlm-eval``), never from the training draws; every
question is asked in its canonical phrasing. The two-image check asks about the first image, shows a second
image and asks about it, then asks about the first image again ("... in the first image?").
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modules.embedded.vlm_questions import QUESTIONS, kinds_for, question_for, referring
from modules.world.dataset import scene_rng
from modules.world.render import render_scene
from modules.world.sampling import sample_scene
from modules.world.spec import Scene

EVAL_SALT = "vlm-eval"


@dataclass
class Scores:
    right: dict[str, int] = field(default_factory=dict)
    asked: dict[str, int] = field(default_factory=dict)
    wrong: list[tuple[str, str, str]] = field(default_factory=list)  # (question, expected, answered), a few
    seconds: float = 0.0

    def add(self, kind: str, question: str, expected: str, answered: str) -> bool:
        ok = answered.strip().lower() == expected
        self.asked[kind] = self.asked.get(kind, 0) + 1
        self.right[kind] = self.right.get(kind, 0) + int(ok)
        if not ok and len(self.wrong) < 12:
            self.wrong.append((question, expected, answered))
        return ok

    def rate(self, kind: str) -> float:
        return self.right.get(kind, 0) / max(1, self.asked.get(kind, 0))

    def overall(self, kinds: tuple[str, ...] | None = None) -> float:
        chosen = kinds or tuple(self.asked)
        return sum(self.right.get(k, 0) for k in chosen) / max(1, sum(self.asked.get(k, 0) for k in chosen))

    def as_dict(self) -> dict[str, Any]:
        return {"per_type": {k: {"right": self.right.get(k, 0), "asked": n, "rate": self.rate(k)}
                             for k, n in self.asked.items()},
                "overall": self.overall(), "wrong_examples": self.wrong, "seconds": self.seconds}


def held_out_scene(index: int, seed: int = 0) -> Scene:
    return sample_scene(scene_rng(seed, index, EVAL_SALT))


def single_image(backend: Any, count: int, seed: int = 0) -> Scores:
    """Every defined question type, canonical phrasing, about ``count`` held-out renders."""
    from modules.understanding.backends.base import Message

    scores, start = Scores(), time.perf_counter()
    for index in range(count):
        scene = held_out_scene(index, seed)
        image = render_scene(scene, 64)
        for kind in kinds_for(scene):
            qa = question_for(scene, kind, None if kind != "yes_no" else scene_rng(seed, index, "yes-no"))
            answer = backend.chat([Message("user", qa.question, (0,))], [image], max_tokens=24).text
            scores.add(kind if len(scene.shapes) == 1 else f"{kind} (two shapes)", qa.question, qa.answer, answer)
    scores.seconds = time.perf_counter() - start
    return scores


def two_image_chat(backend: Any, count: int, seed: int = 0) -> Scores:
    """Per pair of held-out renders: ask about image 1, show image 2 and ask about it, then ask about image 1
    again by name. Scored: "before" (the first answer), "second" and "first again" (the check)."""
    from modules.understanding.backends.base import Message

    scores, start = Scores(), time.perf_counter()
    single = tuple(k for k in QUESTIONS if k not in ("describe", "yes_no"))
    for index in range(count):
        first, second = held_out_scene(2 * index, seed + 1), held_out_scene(2 * index + 1, seed + 1)
        images = [render_scene(first, 64), render_scene(second, 64)]
        kind = single[index % len(single)] if len(first.shapes) == 1 else "count"
        other = single[(index + 1) % len(single)] if len(second.shapes) == 1 else "background"
        qa1, qa2 = question_for(first, kind), question_for(second, other)
        messages = [Message("user", qa1.question, (0,))]
        a1 = backend.chat(messages, images, max_tokens=24).text
        scores.add("before", qa1.question, qa1.answer, a1)
        messages += [Message("assistant", a1), Message("user", qa2.question, (1,))]
        a2 = backend.chat(messages, images, max_tokens=24).text
        scores.add("second", qa2.question, qa2.answer, a2)
        again = referring(qa1, "first")
        messages += [Message("assistant", a2), Message("user", again.question)]
        a3 = backend.chat(messages, images, max_tokens=24).text
        scores.add("first again", again.question, again.answer, a3)
    scores.seconds = time.perf_counter() - start
    return scores


def evaluate(folder: Path, count: int = 100, chats: int = 50, seed: int = 0) -> dict[str, Any]:
    """Both measurements of the model in ``folder``."""
    from modules.understanding.backends.local_vlm import LocalVLMBackend

    backend = LocalVLMBackend(folder)
    return {"single": single_image(backend, count, seed).as_dict(), "two_image": two_image_chat(backend, chats,
                                                                                               seed).as_dict()}
