"""The page's side of "the last generation's parameters" (:mod:`modules.generation.last_params`):
kept when a tab submits a job, filled back into a tab by ↙ (Paste) with an empty prompt."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import gradio as gr

from webui.common import owner_of

if TYPE_CHECKING:
    from modules.app_context import AppContext
    from webui.params import Fields

log = logging.getLogger(__name__)


def remember_submission(ctx: "AppContext", request: gr.Request | None, tab: str, values: dict[str, Any]) -> None:
    """Keep a submitted tab's field values as its user's last generation (a failure is logged, never shown:
    the job is already queued)."""
    from modules.generation.last_params import remember

    try:
        remember(ctx.paths.data_dir, owner_of(request), tab, values)
    except OSError as exc:
        log.warning("could not keep the last generation's parameters: %s", ctx.paths.scrub(str(exc)))


def last_params_updates(ctx: "AppContext", fields: "Fields",
                        request: gr.Request | None) -> tuple[list[Any], str, bool]:
    """(one update per field, a note, whether anything was found) from the user's last generation.

    Fields the last generation did not have (another tab's) are left alone, and so is a value a
    dropdown no longer offers (a sampler or upscaler that went away): the note names those.
    """
    from modules.generation.last_params import recall
    from webui.params import _choices

    last = recall(ctx.paths.data_dir, owner_of(request))
    if last is None:
        return [gr.skip() for _ in fields.names], "No earlier generation to restore: generate once first.", False
    updates: list[Any] = []
    filled, not_applied = 0, []
    for name, component in fields.components.items():
        if name not in last.fields:
            updates.append(gr.skip())
            continue
        value = last.fields[name]
        choices = _choices(component)
        if choices is not None and getattr(component, "type", None) == "index" and isinstance(value, int) \
                and 0 <= value < len(choices):
            value = choices[value]  # a Radio that hands its index to the event is set by its label
        if choices is not None and not isinstance(value, list) and value not in choices:
            not_applied.append(f"{name}={value}")
            updates.append(gr.skip())
            continue
        updates.append(gr.update(value=value))
        filled += 1
    note = f"Restored {filled} field(s) of your last generation ({last.tab})."
    if not_applied:
        note += " Not applied: " + ", ".join(not_applied[:12])
    return updates, note, True
