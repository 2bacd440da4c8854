"""Checks of a request against the loaded model family, with clear messages."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modules.models.loader import LoadedModel


class InvalidRequestError(ValueError):
    """A request that cannot run on the loaded model (message is shown to the user)."""


def resolve_size(width: int | None, height: int | None, model: "LoadedModel") -> tuple[int, int]:
    """Fill a missing size from the model's native size and validate against its family."""
    native_w, native_h = model.native_size
    w = native_w if width is None else width
    h = native_h if height is None else height
    family = model.family
    multiple = family.size_multiple
    for label, value in (("width", w), ("height", h)):
        if value % multiple:
            lower, upper = value // multiple * multiple, (value // multiple + 1) * multiple
            raise InvalidRequestError(
                f"{label} {value} is not a multiple of {multiple} as {family.label} needs; "
                f"use {lower or upper} or {upper}")
        if not family.min_size <= value <= family.max_size:
            raise InvalidRequestError(
                f"{label} {value} is outside {family.min_size}..{family.max_size} for {family.label}")
    return w, h
