"""The shapes world: determinism, vocabulary coverage, rendering, captions and prompt parsing."""

from __future__ import annotations

import random

import numpy as np
import pytest

from modules.world import (
    BACKGROUND_COLOURS,
    LABEL_GROUPS,
    POSITIONS,
    SHAPE_COLOURS,
    SHAPES,
    WorldDataset,
    caption_scene,
    full_caption,
    parse_prompt_to_labels,
    render_scene,
    sample_scene,
    scene_labels,
)
from modules.world.spec import Scene, Shape


def test_same_seed_same_scenes_renders_and_captions() -> None:
    a, b = random.Random(7), random.Random(7)
    for _ in range(20):
        scene_a, scene_b = sample_scene(a), sample_scene(b)
        assert scene_a == scene_b
        assert caption_scene(scene_a, a) == caption_scene(scene_b, b)
        assert render_scene(scene_a).tobytes() == render_scene(scene_b).tobytes()


def test_different_seeds_differ() -> None:
    assert [sample_scene(random.Random(1)) for _ in range(1)] != [sample_scene(random.Random(2)) for _ in range(1)]


def test_vocabulary_sizes() -> None:
    assert len(SHAPES) >= 8 and {"circle", "square", "triangle", "star", "heart"} <= set(SHAPES)
    assert len(SHAPE_COLOURS) >= 8
    assert {"left", "right", "top", "bottom", "centre"} <= set(POSITIONS)
    assert list(LABEL_GROUPS) == ["shape", "colour", "background", "position", "size"]


def test_excluded_shape_never_drawn_and_counts_bounded() -> None:
    rng = random.Random(0)
    scenes = [sample_scene(rng, exclude_shapes=("star",)) for _ in range(500)]
    assert all(s.shape != "star" for scene in scenes for s in scene.shapes)
    assert {len(scene.shapes) for scene in scenes} == {1, 2}
    singles = [sample_scene(rng, max_shapes=1) for _ in range(100)]
    assert all(len(scene.shapes) == 1 for scene in singles)


def test_shape_colour_differs_from_background_and_two_shapes_apart() -> None:
    rng = random.Random(3)
    for _ in range(300):
        scene = sample_scene(rng, two_shape_prob=0.5)
        assert all(s.colour != scene.background for s in scene.shapes)
        if len(scene.shapes) == 2:
            assert scene.shapes[0].position != scene.shapes[1].position


def test_render_is_antialiased_and_placed() -> None:
    scene = Scene("white", (Shape("circle", "red", "top left", "large"),))
    image = np.asarray(render_scene(scene, 64)).astype(int)
    assert image.shape == (64, 64, 3)
    red, background = np.array(SHAPE_COLOURS["red"]), np.array(BACKGROUND_COLOURS["white"])
    is_red = (np.abs(image - red).sum(-1) < 10)
    is_background = (np.abs(image - background).sum(-1) < 10)
    mixed = ~(is_red | is_background)
    assert mixed.sum() > 20, "edges should hold blended (anti-aliased) pixels"
    ys, xs = np.nonzero(is_red)
    assert xs.mean() < 24 and ys.mean() < 24, "a top-left shape lies in the top-left third"


def test_captions_always_name_shape_and_colour_and_parse_back() -> None:
    rng = random.Random(11)
    for _ in range(300):
        scene = sample_scene(rng)
        caption = caption_scene(scene, rng)
        labels = scene_labels(scene)
        assert labels["shape"] in caption and labels["colour"] in caption
        parsed = parse_prompt_to_labels(caption)
        assert parsed["shape"] == labels["shape"] and parsed["colour"] == labels["colour"]
        for key in ("position", "background", "size"):
            if key in parsed:
                assert parsed[key] == labels[key], (caption, parsed, labels)
        full = parse_prompt_to_labels(full_caption(scene))
        assert {k: full[k] for k in ("shape", "colour", "background", "position", "size")} == {
            k: labels[k] for k in ("shape", "colour", "background", "position", "size")
        }


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("a red circle", {"shape": "circle", "colour": "red"}),
        ("a small green triangle at the top left", {"shape": "triangle", "colour": "green", "size": "small",
                                                   "position": "top left"}),
        ("an orange heart in the middle on a grey background", {"shape": "heart", "colour": "orange",
                                                                 "position": "centre", "background": "gray"}),
        ("a big blue square on the right and a red star", {"shape": "square", "colour": "blue", "size": "large",
                                                            "position": "right"}),
        ("a landscape", {}),
    ],
)
def test_parse_prompt(prompt: str, expected: dict[str, str]) -> None:
    assert parse_prompt_to_labels(prompt) == expected


def test_dataset_items_and_epoch_captions() -> None:
    data = WorldDataset(8, seed=5, exclude_shapes=("star",))
    item = data[3]
    assert item["pixel_values"].shape == (3, 64, 64)
    assert float(item["pixel_values"].min()) >= -1.0 and float(item["pixel_values"].max()) <= 1.0
    assert item["labels"] == scene_labels(data.scene(3))
    captions_epoch0 = [data.caption(i) for i in range(8)]
    assert captions_epoch0 == [data[i]["caption"] for i in range(8)]
    data.set_epoch(1)
    assert [data.caption(i) for i in range(8)] != captions_epoch0
    assert data.scene(3) == WorldDataset(8, seed=5, exclude_shapes=("star",)).scene(3)
