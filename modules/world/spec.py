"""Vocabulary and data classes of the shapes world.

The world is a flat-colour scene: one or two shapes on a plain coloured background.
Every name here is a plain English word so that captions and prompts share one vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

SHAPES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "star",
    "heart",
    "diamond",
    "hexagon",
    "cross",
)

# Colours a shape can have (sRGB, 0-255).
SHAPE_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 35, 35),
    "orange": (245, 135, 20),
    "yellow": (245, 215, 35),
    "green": (35, 165, 60),
    "blue": (40, 85, 225),
    "purple": (135, 50, 190),
    "pink": (245, 125, 190),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}

# Colours a background can have; muted so that every shape colour stands out.
BACKGROUND_COLOURS: dict[str, tuple[int, int, int]] = {
    "white": (232, 232, 228),
    "black": (28, 28, 32),
    "gray": (128, 128, 128),
    "blue": (60, 90, 160),
    "green": (70, 130, 80),
    "yellow": (225, 205, 120),
}

# Positions on a 3x3 grid: name -> (column, row) with 0 = left/top, 2 = right/bottom.
POSITIONS: dict[str, tuple[int, int]] = {
    "top left": (0, 0),
    "top": (1, 0),
    "top right": (2, 0),
    "left": (0, 1),
    "centre": (1, 1),
    "right": (2, 1),
    "bottom left": (0, 2),
    "bottom": (1, 2),
    "bottom right": (2, 2),
}

SIZES: tuple[str, ...] = ("small", "large")

# Radius of a shape as a fraction of the image side, per size word.
SIZE_RADIUS: dict[str, float] = {"small": 0.13, "large": 0.23}

# Centre of the grid cells as a fraction of the image side (for column/row 0, 1, 2).
GRID_CENTRES: tuple[float, float, float] = (0.27, 0.5, 0.73)

# Label groups the classifier predicts, in a fixed order (one head per group).
LABEL_GROUPS: dict[str, tuple[str, ...]] = {
    "shape": SHAPES,
    "colour": tuple(SHAPE_COLOURS),
    "background": tuple(BACKGROUND_COLOURS),
    "position": tuple(POSITIONS),
    "size": SIZES,
}

HELD_OUT_SHAPE = "star"


@dataclass(frozen=True)
class Shape:
    """One shape of a scene; `jitter` fields are small offsets that keep renders varied."""

    shape: str
    colour: str
    position: str
    size: str
    dx: float = 0.0
    dy: float = 0.0
    scale: float = 1.0
    angle: float = 0.0


@dataclass(frozen=True)
class Scene:
    """A background colour and one or more shapes, drawn in order."""

    background: str
    shapes: tuple[Shape, ...]

    @property
    def primary(self) -> Shape:
        """The first shape; single-object labels and captions describe it first."""
        return self.shapes[0]
