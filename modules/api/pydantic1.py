"""Pydantic-1 input coercion for the A1111 payloads.

AUTOMATIC1111 v1.10 runs FastAPI 0.94 on pydantic 1, and A1111 clients lean on pydantic 1's lax coercion
without knowing it. Pydantic 2 (which Atelier runs) accepts most of the same inputs (``"7.0"`` into a
float, ``"20"`` into an int, ``"yes"`` into a bool) but refuses three that pydantic 1 took:

* a fractional number into an int field: pydantic 1 truncates (``2.5`` -> ``2``, ``int(2.5)``);
* a number into a str field: pydantic 1 writes it out (``5`` -> ``"5"``, ``7.5`` -> ``"7.5"``);
* ``null`` for a field with a default: A1111 generates its request models with every field
  ``Optional``, so ``null`` is accepted and processing treats it as "not set"; here it takes the default.

:class:`Pydantic1Payload` applies these before pydantic 2 validates, so a request A1111 takes is
taken here too. Anything else goes to pydantic 2 unchanged (and a value neither version accepts is
still a 422 naming the field).
"""

from __future__ import annotations

import math
import types
import typing
from typing import Any, Union

from pydantic import BaseModel, model_validator

_MISSING = object()


def _optional_inner(annotation: Any) -> tuple[Any, bool]:
    """(the annotation without ``None``, whether ``None`` was allowed)."""
    origin = typing.get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        allows_none = len(args) < len(typing.get_args(annotation))
        return (args[0] if len(args) == 1 else annotation), allows_none
    return annotation, annotation is Any


def coerce_v1(value: Any, annotation: Any) -> Any:
    """``value`` as pydantic 1 would have coerced it into ``annotation`` where pydantic 2 would refuse it;
    any other value is returned unchanged (pydantic 2 then decides)."""
    inner, _ = _optional_inner(annotation)
    if value is None:
        return None
    if inner is int and isinstance(value, float) and math.isfinite(value):
        return int(value)  # pydantic 1: int(v), truncation toward zero
    if inner is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if typing.get_origin(inner) is list and isinstance(value, list):
        (item,) = typing.get_args(inner) or (Any,)
        return [coerce_v1(v, item) for v in value]
    return value


def coerce_fields(data: Any, model: type[BaseModel]) -> Any:
    """Apply :func:`coerce_v1` to every field of ``data`` (a request body dict) that ``model`` declares;
    a ``null`` for a field that does not allow ``None`` is dropped so the field takes its default."""
    if not isinstance(data, dict):
        return data
    out: dict[str, Any] = {}
    for key, value in data.items():
        field = model.model_fields.get(key)
        if field is None:
            out[key] = value
            continue
        _, allows_none = _optional_inner(field.annotation)
        if value is None and not allows_none and not field.is_required():
            continue  # A1111: every field is Optional; None means "not set"
        out[key] = coerce_v1(value, field.annotation)
    return out


class Pydantic1Payload(BaseModel):
    """Base of the A1111 payload models: pydantic 1's coercions first (see the module docstring)."""

    @model_validator(mode="before")
    @classmethod
    def _pydantic1_coercion(cls, data: Any) -> Any:
        return coerce_fields(data, cls)
