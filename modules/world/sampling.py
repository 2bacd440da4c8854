"""Random scenes of the shapes world, deterministic for a given `random.Random`."""

from __future__ import annotations

import random
from collections.abc import Iterable

from modules.world.spec import BACKGROUND_COLOURS, POSITIONS, SHAPE_COLOURS, SHAPES, SIZES, Scene, Shape


def _far_apart(a: str, b: str) -> bool:
    """True when two grid positions are two cells apart along some axis (shapes cannot touch)."""
    (ac, ar), (bc, br) = POSITIONS[a], POSITIONS[b]
    return max(abs(ac - bc), abs(ar - br)) == 2


def _sample_shape(rng: random.Random, shapes: list[str], background: str, position: str, size: str) -> Shape:
    colours = [c for c in SHAPE_COLOURS if c != background]
    return Shape(
        shape=rng.choice(shapes),
        colour=rng.choice(colours),
        position=position,
        size=size,
        dx=rng.uniform(-0.03, 0.03),
        dy=rng.uniform(-0.03, 0.03),
        scale=rng.uniform(0.9, 1.1),
        angle=rng.uniform(-8.0, 8.0),
    )


def sample_scene(
    rng: random.Random,
    *,
    exclude_shapes: Iterable[str] = (),
    max_shapes: int = 2,
    two_shape_prob: float = 0.3,
) -> Scene:
    """Draw a scene: a background and 1..`max_shapes` (at most 2) shapes not in `exclude_shapes`.

    Two-shape scenes use small shapes at positions two grid cells apart, so shapes never overlap.
    """
    if max_shapes not in (1, 2):
        raise ValueError("max_shapes must be 1 or 2")
    excluded = set(exclude_shapes)
    shapes = [s for s in SHAPES if s not in excluded]
    if not shapes:
        raise ValueError("every shape is excluded")
    background = rng.choice(tuple(BACKGROUND_COLOURS))
    if max_shapes == 2 and rng.random() < two_shape_prob:
        first = rng.choice([p for p in POSITIONS if p != "centre"])
        second = rng.choice([p for p in POSITIONS if _far_apart(first, p)])
        return Scene(
            background=background,
            shapes=(
                _sample_shape(rng, shapes, background, first, "small"),
                _sample_shape(rng, shapes, background, second, "small"),
            ),
        )
    position = rng.choice(tuple(POSITIONS))
    size = rng.choice(SIZES)
    return Scene(background=background, shapes=(_sample_shape(rng, shapes, background, position, size),))


def scene_labels(scene: Scene) -> dict[str, str]:
    """Ground-truth labels of the scene's primary shape plus background and shape count."""
    first = scene.primary
    return {
        "shape": first.shape,
        "colour": first.colour,
        "background": scene.background,
        "position": first.position,
        "size": first.size,
        "count": str(len(scene.shapes)),
    }
