"""Extension point for extra accordions of the generation tabs (ControlNet units, later others).

A section builder is ``build(ctx, ui, tab, fields) -> None``: it renders an accordion and registers
each of its widgets in ``fields`` under the request field it fills (e.g. ``controlnet_units``), so
the tab's Generate event passes them and parameter recall can fill them. A section whose backend
module is not part of this build is skipped, so no tab shows an empty or placeholder panel.

ControlNet: when ``modules/generation/controlnet.py`` exists and the request models carry its unit
field, add its builder to :data:`SECTIONS` as ``("modules.generation.controlnet", build_controlnet)``.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from modules.app_context import AppContext
    from webui.params import Fields
    from webui.ui_config import UiDefaults

SectionBuilder = Callable[["AppContext", "UiDefaults", str, "Fields"], None]

#: (backend module that must exist, builder); built in this order under the tab's own fields
SECTIONS: tuple[tuple[str, SectionBuilder], ...] = ()


def available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def build_sections(ctx: "AppContext", ui: "UiDefaults", tab: str, fields: "Fields",
                   sections: tuple[tuple[str, SectionBuilder], ...] = SECTIONS) -> list[str]:
    """Build every section whose backend exists; returns the modules built (for tests and logs)."""
    built: list[str] = []
    for module, builder in sections:
        if available(module):
            builder(ctx, ui, tab, fields)
            built.append(module)
    return built
