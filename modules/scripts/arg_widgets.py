"""What widget each argument of a script's ``Args`` gets, and widget values back to typed arguments.

No Gradio here: :func:`widget_specs` describes one widget per field (the UI layer, ``webui/scripts_section.py``,
makes the components), :func:`args_from_widgets` turns the widgets' values into arguments by name.

=================================  ==========================================
the field                          the widget
=================================  ==========================================
``bool``                           checkbox
``int``/``float`` with ``ge``+``le``  slider (step 1 for ``int``)
``int``/``float`` otherwise        number box
``Literal[...]`` or an ``Enum``    dropdown of its values
``str``                            text box
anything else (lists, dicts...)    text box holding JSON
=================================  ==========================================

The field's ``description`` is the widget's hint; its ``title`` (else its name, humanised) the label.
"""

from __future__ import annotations

import enum
import json
import types
import typing
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined


@dataclass(frozen=True)
class WidgetSpec:
    name: str                  # the Args field
    kind: str                  # "checkbox", "slider", "number", "dropdown", "textbox", "json"
    label: str
    default: Any
    info: str = ""
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    choices: tuple[Any, ...] = ()
    integer: bool = False


def _unwrap_optional(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _bounds(info: Any) -> tuple[float | None, float | None]:
    low = high = None
    for item in info.metadata:
        low = getattr(item, "ge", None) if getattr(item, "ge", None) is not None else low
        low = getattr(item, "gt", None) if low is None and getattr(item, "gt", None) is not None else low
        high = getattr(item, "le", None) if getattr(item, "le", None) is not None else high
        high = getattr(item, "lt", None) if high is None and getattr(item, "lt", None) is not None else high
    return low, high


def _label(name: str, info: Any) -> str:
    return info.title or name.replace("_", " ").capitalize()


def _default(info: Any) -> Any:
    if info.default is not PydanticUndefined:
        return info.default
    if info.default_factory is not None:
        return info.default_factory()
    return None


def widget_spec(name: str, info: Any) -> WidgetSpec:
    """The widget of one ``Args`` field (``info``: its pydantic ``FieldInfo``)."""
    annotation = _unwrap_optional(info.annotation)
    default = _default(info)
    base = {"name": name, "label": _label(name, info), "info": info.description or ""}
    if isinstance(default, enum.Enum):
        default = default.value
    if annotation is bool:
        return WidgetSpec(kind="checkbox", default=bool(default), **base)
    if typing.get_origin(annotation) is typing.Literal:
        return WidgetSpec(kind="dropdown", default=default, choices=tuple(typing.get_args(annotation)), **base)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return WidgetSpec(kind="dropdown", default=default, choices=tuple(m.value for m in annotation), **base)
    if annotation in (int, float):
        integer = annotation is int
        low, high = _bounds(info)
        if low is not None and high is not None:
            step = 1 if integer else (0.01 if high - low <= 2 else 0.1 if high - low <= 100 else 1)
            return WidgetSpec(kind="slider", default=default if default is not None else low, minimum=low,
                              maximum=high, step=step, integer=integer, **base)
        return WidgetSpec(kind="number", default=default, integer=integer, **base)
    if annotation is str:
        return WidgetSpec(kind="textbox", default="" if default is None else default, **base)
    return WidgetSpec(kind="json", default=json.dumps(default), **base)


def widget_specs(args_model: type[BaseModel]) -> list[WidgetSpec]:
    """One widget per field of a script's ``Args``, in declaration order."""
    return [widget_spec(name, info) for name, info in args_model.model_fields.items()]


class WidgetValueError(ValueError):
    """A widget holds something its argument cannot take (the message names the script and the field)."""


def args_from_widgets(title: str, args_model: type[BaseModel], values: dict[str, Any]) -> dict[str, Any]:
    """The widgets' values (by field name) as arguments by name: sliders' floats back to ints, JSON parsed.
    The script's own ``Args`` validates them when the job is submitted."""
    specs = {spec.name: spec for spec in widget_specs(args_model)}
    out: dict[str, Any] = {}
    for name, value in values.items():
        spec = specs.get(name)
        if spec is None:
            continue
        if spec.kind in ("slider", "number") and spec.integer and isinstance(value, float) and value.is_integer():
            value = int(value)
        elif spec.kind == "json":
            try:
                value = json.loads(value) if isinstance(value, str) and value.strip() else None
            except ValueError as exc:
                raise WidgetValueError(f"script {title!r}: {spec.label}: not valid JSON ({exc.msg})") from None
        out[name] = value
    return out


def widget_value(spec: WidgetSpec, value: Any) -> Any:
    """An argument's value as its widget shows it (the reverse of :func:`args_from_widgets`)."""
    if isinstance(value, enum.Enum):
        value = value.value
    if spec.kind == "json":
        return json.dumps(value)
    return value
