"""Small helpers over a key -> shape mapping (what a safetensors header gives)."""

from __future__ import annotations

import re
from typing import Mapping

Shapes = Mapping[str, tuple[int, ...]]


class ShapeError(ValueError):
    """The shapes do not describe a model this project can build."""


def need(shapes: Shapes, key: str) -> tuple[int, ...]:
    """Shape of ``key``; ShapeError naming the key when it is missing."""
    try:
        return shapes[key]
    except KeyError:
        raise ShapeError(f"missing tensor '{key}'") from None


def has_prefix(shapes: Shapes, prefix: str) -> bool:
    """True when any key starts with ``prefix``."""
    return any(key.startswith(prefix) for key in shapes)


def indices(shapes: Shapes, prefix: str) -> list[int]:
    """Sorted distinct integers N found as ``<prefix>N.`` in the keys."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    found = {int(m[1]) for key in shapes if (m := pattern.match(key))}
    return sorted(found)


def count(shapes: Shapes, prefix: str) -> int:
    """Number of consecutive blocks ``<prefix>0.``, ``<prefix>1.``, ... (ShapeError on gaps)."""
    found = indices(shapes, prefix)
    if found != list(range(len(found))):
        raise ShapeError(f"non-contiguous block numbering under '{prefix}'")
    return len(found)
