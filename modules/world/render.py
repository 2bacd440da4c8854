"""Anti-aliased rendering of scenes (supersampled polygons, box-filtered down)."""

from __future__ import annotations

import math

from PIL import Image, ImageDraw

from modules.world.spec import BACKGROUND_COLOURS, GRID_CENTRES, POSITIONS, SHAPE_COLOURS, SIZE_RADIUS, Scene, Shape

SUPERSAMPLE = 4

Point = tuple[float, float]


def _regular(n: int, start_deg: float) -> list[Point]:
    return [
        (math.cos(math.radians(start_deg + 360.0 * k / n)), math.sin(math.radians(start_deg + 360.0 * k / n)))
        for k in range(n)
    ]


def _star() -> list[Point]:
    points: list[Point] = []
    for k in range(10):
        r = 1.0 if k % 2 == 0 else 0.42
        a = math.radians(-90.0 + 36.0 * k)
        points.append((r * math.cos(a), r * math.sin(a) + 0.08))
    return points


def _heart() -> list[Point]:
    points: list[Point] = []
    for k in range(64):
        t = 2.0 * math.pi * k / 64
        x = 16.0 * math.sin(t) ** 3
        y = 13.0 * math.cos(t) - 5.0 * math.cos(2 * t) - 2.0 * math.cos(3 * t) - math.cos(4 * t)
        points.append((x / 16.5, -y / 16.5 - 0.05))
    return points


def _cross() -> list[Point]:
    a, b = 0.32, 0.95
    return [(-a, -b), (a, -b), (a, -a), (b, -a), (b, a), (a, a), (a, b), (-a, b), (-a, a), (-b, a), (-b, -a), (-a, -a)]


# Unit outlines (radius ~1 around the origin, y pointing down).
OUTLINES: dict[str, list[Point]] = {
    "square": [(-0.82, -0.82), (0.82, -0.82), (0.82, 0.82), (-0.82, 0.82)],
    "triangle": [(x, y + 0.18) for x, y in _regular(3, -90.0)],
    "star": _star(),
    "heart": _heart(),
    "diamond": [(0.0, -1.0), (0.72, 0.0), (0.0, 1.0), (-0.72, 0.0)],
    "hexagon": _regular(6, 0.0),
    "cross": _cross(),
}


def shape_geometry(shape: Shape, size: int) -> tuple[float, float, float]:
    """Centre x, centre y and radius of a shape in pixels of a `size`×`size` image."""
    column, row = POSITIONS[shape.position]
    cx = (GRID_CENTRES[column] + shape.dx) * size
    cy = (GRID_CENTRES[row] + shape.dy) * size
    return cx, cy, SIZE_RADIUS[shape.size] * shape.scale * size


def _draw_shape(draw: ImageDraw.ImageDraw, shape: Shape, size: int) -> None:
    cx, cy, radius = shape_geometry(shape, size)
    fill = SHAPE_COLOURS[shape.colour]
    if shape.shape == "circle":
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=fill)
        return
    cos_a, sin_a = math.cos(math.radians(shape.angle)), math.sin(math.radians(shape.angle))
    points = [
        (cx + radius * (x * cos_a - y * sin_a), cy + radius * (x * sin_a + y * cos_a)) for x, y in OUTLINES[shape.shape]
    ]
    draw.polygon(points, fill=fill)


def render_scene(scene: Scene, size: int = 64) -> Image.Image:
    """Render `scene` as an RGB image of `size`×`size` pixels with anti-aliased edges."""
    big = size * SUPERSAMPLE
    image = Image.new("RGB", (big, big), BACKGROUND_COLOURS[scene.background])
    draw = ImageDraw.Draw(image)
    for shape in scene.shapes:
        _draw_shape(draw, shape, big)
    return image.resize((size, size), Image.Resampling.BOX)
