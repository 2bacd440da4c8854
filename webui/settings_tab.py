"""The Settings tab: one widget per :class:`modules.settings.Settings` field (built from the model, so
new options appear by themselves), saved with ``ctx.settings.update`` to ``<data dir>/config.json``.

Settings are read by every job when it starts, so a change applies to the next generation without a
restart; changing ``sd_model_checkpoint`` also queues the switch, as A1111's ``onchange`` does.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gradio as gr

from webui.common import checkpoint_titles, readable, status_html
from webui.ext_settings_section import build_extension_options

if TYPE_CHECKING:
    from modules.app_context import AppContext


@dataclass
class SettingsTab:
    components: dict[str, Any]
    apply: Any
    status: Any


def _bounds(info: Any) -> tuple[float | None, float | None]:
    low = high = None
    for item in info.metadata:
        low = getattr(item, "ge", low)
        high = getattr(item, "le", high)
    return low, high


def widget_for(ctx: "AppContext", name: str, info: Any, value: Any, read_only: bool) -> Any:
    """The Gradio widget for one settings field (label: its description, info: its key)."""
    label, hint = info.description or name, name
    common = {"label": label, "info": hint, "elem_id": f"setting_{name}", "interactive": not read_only}
    annotation = info.annotation
    if typing.get_origin(annotation) is typing.Literal:
        return gr.Dropdown(list(typing.get_args(annotation)), value=value, **common)
    if annotation is bool:
        return gr.Checkbox(value=value, **common)
    if annotation is int or annotation is float:
        low, high = _bounds(info)
        if low is not None and high is not None and high - low <= 1000:
            return gr.Slider(low, high, value=value, step=1 if annotation is int else 0.01, **common)
        return gr.Number(value=value, precision=0 if annotation is int else None, **common)
    if name == "sd_model_checkpoint":
        return gr.Dropdown(checkpoint_titles(ctx), value=value or None, allow_custom_value=True, **common)
    return gr.Textbox(value="" if value is None else str(value), **common)


def _coerce(info: Any, value: Any) -> Any:
    if info.annotation is int and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def build_settings_tab(ctx: "AppContext") -> SettingsTab:
    from modules.settings import READ_ONLY, Settings

    current = ctx.settings.as_dict()
    fields = Settings.model_fields
    with gr.Row():
        apply = gr.Button("Apply settings", variant="primary", elem_id="settings_submit")
        reload = gr.Button("Reload from disk", elem_id="settings_reload")
    status = gr.HTML(status_html(f"Saved to {ctx.paths.shown(ctx.paths.settings_file)}; per-field UI defaults: "
                                 f"{ctx.paths.shown(ctx.paths.data_dir / 'ui-config.json')} (read at start-up)"),
                     elem_id="settings_status")
    components: dict[str, Any] = {}
    with gr.Column(elem_id="settings"):
        for name, info in fields.items():
            components[name] = widget_for(ctx, name, info, current.get(name), name in READ_ONLY)
    build_extension_options(ctx)  # approved extensions' ui_settings options, with their own Apply button
    names = list(components)

    def on_apply(*values: Any) -> list[Any]:
        from modules.models.load_job import switch_model
        from modules.settings import SettingsError

        now = ctx.settings.as_dict()
        changes = {name: _coerce(fields[name], value) for name, value in zip(names, values)
                   if name not in READ_ONLY and _coerce(fields[name], value) != now.get(name)}
        if not changes:
            return [gr.skip() for _ in names] + [status_html("Nothing changed.")]
        model = changes.get("sd_model_checkpoint")
        note = ""
        if model:
            try:  # switch first: the load job itself records the setting once it succeeded
                switch_model(ctx, model, owner="webui")
                note = f" Loading {model} in the background."
            except Exception as exc:  # noqa: BLE001 - an unknown checkpoint: say so, keep the rest
                return [gr.skip() for _ in names] + [status_html(readable(exc), "error")]
            changes.pop("sd_model_checkpoint")
        try:
            saved = ctx.settings.update(changes) if changes else ctx.settings.current
        except SettingsError as exc:
            return [gr.skip() for _ in names] + [status_html(readable(exc), "error")]
        data = saved.model_dump()
        listed = ", ".join(sorted(changes)) or "checkpoint"
        return [gr.update(value=data.get(n)) for n in names] + [status_html(
            f"Saved {len(changes) or 1} setting(s): {listed}; they apply from the next generation.{note}", "ok")]

    def on_reload() -> list[Any]:
        data = ctx.settings.as_dict()
        return [gr.update(value=data.get(n)) for n in names] + [status_html("Reloaded.")]

    apply.click(on_apply, inputs=[components[n] for n in names], outputs=[*components.values(), status],
                api_name="settings")
    reload.click(on_reload, outputs=[*components.values(), status], api_visibility="private")
    return SettingsTab(components, apply, status)
