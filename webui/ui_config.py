"""Per-field UI defaults, as A1111's ``ui-config.json``: ``{"txt2img/Sampling steps/value": 30, ...}``.

Read once when the UI is built (``<data dir>/ui-config.json``). Every field built through
:meth:`UiDefaults.make` records its built-in defaults; :meth:`UiDefaults.save` writes the keys that
are not in the file yet, so users find every tunable key there after the first start. A value of
the wrong type is ignored with a warning (the built-in default stays).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, TypeVar

log = logging.getLogger(__name__)

#: component properties a ui-config.json entry may set
PROPERTIES = ("value", "minimum", "maximum", "step", "visible")
T = TypeVar("T")


def _same_kind(default: Any, value: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, (int, float)) and isinstance(value, (int, float)):
        return True
    if default is None:
        return True
    if isinstance(default, list):
        return isinstance(value, list)
    return isinstance(value, type(default))


class UiDefaults:
    """The overrides of one ``ui-config.json`` and the defaults seen while building the UI."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.data: dict[str, Any] = {}
        self.defaults: dict[str, Any] = {}
        if path is not None and path.exists():
            try:
                raw = json.loads(path.read_text(encoding="utf-8"))
                self.data = raw if isinstance(raw, dict) else {}
            except (OSError, ValueError) as exc:
                log.warning("ui-config %s is unreadable (%s); using the built-in defaults", path, exc)

    def apply(self, key_prefix: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        """``kwargs`` with the overrides of ``<key_prefix>/<property>`` applied."""
        for prop in PROPERTIES:
            key = f"{key_prefix}/{prop}"
            if prop in kwargs:
                self.defaults[key] = kwargs[prop]
            if key in self.data:
                value = self.data[key]
                if prop in kwargs and not _same_kind(kwargs[prop], value):
                    log.warning("ui-config: ignoring %s=%r (expected a value like %r)", key, value, kwargs[prop])
                    continue
                kwargs[prop] = value
        choices = kwargs.get("choices")
        if choices is not None and "value" in kwargs and not kwargs.get("multiselect") and kwargs["value"] not in (
                [c[1] if isinstance(c, tuple) else c for c in choices]) and kwargs.get("allow_custom_value") is not True:
            log.warning("ui-config: %s/value=%r is not one of the choices", key_prefix, kwargs["value"])
            kwargs["value"] = self.defaults.get(f"{key_prefix}/value")
        return kwargs

    def make(self, factory: Callable[..., T], tab: str, label: str, **kwargs: Any) -> T:
        """Build ``factory(label=label, **kwargs)`` with this file's overrides for ``tab/label``."""
        return factory(label=label, **self.apply(f"{tab}/{label}", kwargs))

    def save(self) -> None:
        """Add the defaults the file does not have yet (atomic write); never fails the UI."""
        if self.path is None:
            return
        missing = {k: v for k, v in self.defaults.items() if k not in self.data and _jsonable(v)}
        if not missing:
            return
        merged = {**self.data, **missing}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(merged, indent=4, ensure_ascii=False), encoding="utf-8")
            os.replace(tmp, self.path)
            self.data = merged
        except OSError as exc:
            log.warning("could not write %s: %s", self.path, exc)


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
