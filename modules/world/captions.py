"""Natural-language captions of scenes and the inverse: what a prompt asks for."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from modules.world.spec import BACKGROUND_COLOURS, POSITIONS, SHAPE_COLOURS, SHAPES, Scene, Shape

_POSITION_PHRASES: dict[str, tuple[str, ...]] = {
    "top left": ("at the top left", "in the top left corner", "in the upper left"),
    "top": ("at the top", "at the top"),
    "top right": ("at the top right", "in the top right corner", "in the upper right"),
    "left": ("on the left", "at the left"),
    "centre": ("in the centre", "in the middle", "in the center"),
    "right": ("on the right", "at the right"),
    "bottom left": ("at the bottom left", "in the bottom left corner", "in the lower left"),
    "bottom": ("at the bottom", "at the bottom"),
    "bottom right": ("at the bottom right", "in the bottom right corner", "in the lower right"),
}
_SIZE_WORDS: dict[str, tuple[str, ...]] = {"small": ("small", "small", "little"), "large": ("large", "large", "big")}
_PREFIXES: tuple[str, ...] = ("", "", "", "a picture of ", "an image of ", "a drawing of ")


def _with_article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _noun_phrase(shape: Shape, rng: random.Random, p_size: float) -> tuple[str, bool]:
    """"a [size] colour shape" and whether the size word is in it."""
    words = [shape.colour, shape.shape]
    named_size = rng.random() < p_size
    if named_size:
        words.insert(0, rng.choice(_SIZE_WORDS[shape.size]))
    return _with_article(" ".join(words)), named_size


@dataclass(frozen=True)
class CaptionMentions:
    """What a caption names: per shape, whether its size and position are in it; and the background."""

    sizes: tuple[bool, ...]
    positions: tuple[bool, ...]
    background: bool


def caption_scene_with_mentions(
    scene: Scene,
    rng: random.Random,
    *,
    p_position: float = 0.6,
    p_size: float = 0.5,
    p_background: float = 0.5,
) -> tuple[str, CaptionMentions]:
    """`caption_scene`'s caption (the same random draws) and which optional parts it names."""
    parts, sizes, positions = [], [], []
    for shape in scene.shapes:
        phrase, named_size = _noun_phrase(shape, rng, p_size)
        sizes.append(named_size)
        named_position = rng.random() < p_position
        if named_position:
            phrase += " " + rng.choice(_POSITION_PHRASES[shape.position])
        positions.append(named_position)
        parts.append(phrase)
    text = " and ".join(parts)
    named_background = rng.random() < p_background
    if named_background:
        text += f" on a {scene.background} background"
    prefix = rng.choice(_PREFIXES)
    return prefix + text, CaptionMentions(tuple(sizes), tuple(positions), named_background)


def caption_scene(
    scene: Scene,
    rng: random.Random,
    *,
    p_position: float = 0.6,
    p_size: float = 0.5,
    p_background: float = 0.5,
) -> str:
    """A varied caption that always names each shape and its colour; size, position and background sometimes."""
    text, _ = caption_scene_with_mentions(scene, rng, p_position=p_position, p_size=p_size, p_background=p_background)
    return text


def full_caption(scene: Scene) -> str:
    """The deterministic caption naming everything: size, colour, shape, position and background."""
    parts = [
        _with_article(f"{s.size} {s.colour} {s.shape}") + " " + _POSITION_PHRASES[s.position][0] for s in scene.shapes
    ]
    return " and ".join(parts) + f" on a {scene.background} background"


_SYNONYMS: dict[str, str] = {
    "grey": "gray",
    "center": "centre",
    "middle": "centre",
    "big": "large",
    "little": "small",
    "tiny": "small",
    "upper": "top",
    "lower": "bottom",
    "violet": "purple",
    "squares": "square",
    "circles": "circle",
}
_WORD = re.compile(r"[a-z]+")


def _first_shape_index(words: list[str]) -> int:
    for i, word in enumerate(words):
        if word in SHAPES:
            return i
    return -1


def _position_of(words: list[str]) -> str | None:
    vertical = next((w for w in words if w in ("top", "bottom")), None)
    horizontal = next((w for w in words if w in ("left", "right")), None)
    if vertical and horizontal:
        return f"{vertical} {horizontal}"
    if vertical or horizontal:
        return vertical or horizontal
    return "centre" if "centre" in words else None


def parse_prompt_to_labels(prompt: str) -> dict[str, str]:
    """Labels a prompt asks for (keys among shape, colour, background, position, size) for its first shape.

    Only the clause of the first shape is read for size/colour/position; the background is read from
    "<colour> background" anywhere in the prompt.
    """
    words = [_SYNONYMS.get(w, w) for w in _WORD.findall(prompt.lower())]
    labels: dict[str, str] = {}
    background_index = -1
    for i in range(1, len(words)):
        if words[i] == "background" and words[i - 1] in BACKGROUND_COLOURS:
            labels["background"] = words[i - 1]
            background_index = i - 1
    shape_index = _first_shape_index(words)
    if shape_index < 0:
        return labels
    labels["shape"] = words[shape_index]
    for word in reversed(words[:shape_index]):
        if word in SHAPE_COLOURS and "colour" not in labels:
            labels["colour"] = word
        if word in ("small", "large") and "size" not in labels:
            labels["size"] = word
    clause_end = next((i for i in range(shape_index + 1, len(words)) if words[i] == "and"), len(words))
    if background_index > shape_index:
        clause_end = min(clause_end, background_index)
    position = _position_of(words[shape_index + 1 : clause_end])
    if position is not None and position in POSITIONS:
        labels["position"] = position
    return labels
