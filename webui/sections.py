"""Extension point for extra accordions of the generation tabs (ControlNet units, later others).

A :class:`Section` names the backend module it needs, a ``build(ctx, ui, tab, fields)`` that renders its
accordion and registers each widget in ``fields`` (so the tab's Generate event passes them and
parameter recall can fill them), and a ``collect(values, tab)`` that folds its widgets' values into
request fields (e.g. ``cn0_weight``... into ``controlnet_units``). A section whose backend module is
not part of this build is skipped, so no tab shows an empty or placeholder panel.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from webui.controlnet_section import build_controlnet, collect_units
from webui.scripts_section import build_scripts, collect_scripts

if TYPE_CHECKING:
    from modules.app_context import AppContext
    from webui.params import Fields
    from webui.ui_config import UiDefaults

SectionBuilder = Callable[["AppContext", "UiDefaults", str, "Fields"], None]
SectionCollector = Callable[[dict[str, Any], str], dict[str, Any]]


@dataclass(frozen=True)
class Section:
    module: str                 # the backend module that must exist
    build: SectionBuilder
    collect: SectionCollector
    #: True: called as ``collect(values, tab, ctx)`` (it needs the app context, e.g. the script registry)
    needs_ctx: bool = False


#: built in this order, under the tab's own fields
SECTIONS: tuple[Section, ...] = (Section("modules.generation.controlnet.hook", build_controlnet, collect_units),
                                 Section("modules.scripts.host", build_scripts, collect_scripts, needs_ctx=True))


def available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def build_sections(ctx: "AppContext", ui: "UiDefaults", tab: str, fields: "Fields",
                   sections: tuple[Section, ...] = SECTIONS) -> list[str]:
    """Build every section whose backend exists; returns the modules built (for tests and logs)."""
    built: list[str] = []
    for section in sections:
        if available(section.module):
            section.build(ctx, ui, tab, fields)
            built.append(section.module)
    return built


def collect_sections(values: dict[str, Any], tab: str, sections: tuple[Section, ...] = SECTIONS,
                     ctx: "AppContext | None" = None) -> dict[str, Any]:
    """Request kwargs with every built section's widgets folded into its request fields."""
    for section in sections:
        if available(section.module):
            values = section.collect(values, tab, ctx) if section.needs_ctx else section.collect(values, tab)
    return values
