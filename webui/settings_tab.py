"""The Settings tab: one widget per :class:`modules.settings.Settings` field (built from the model, so
new options appear by themselves), in sections with a search box, saved with ``ctx.settings.update`` to
``<data dir>/config.json``.

The layout (sections, labels, the search rule, the quicksettings bar's keys) is
:mod:`modules.settings_layout`; this module only builds the widgets; the search box filters in the page
(``webui/js/settings_search.js``, the same rule as ``settings_layout.matches``). Settings are read by every
job when it starts, so a change applies to the next generation without a restart; changing
``sd_model_checkpoint`` also queues the switch, as A1111's ``onchange`` does. :func:`widget_for` also builds
the quicksettings bar's widgets (webui/quicksettings.py); both read their values at every page load.
"""

from __future__ import annotations

import json
import re
import typing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import gradio as gr

from webui.common import active_title, checkpoint_titles, readable, status_html
from webui.ext_settings_section import build_extension_options
from webui.hf_token_section import build_hf_token_section

if TYPE_CHECKING:
    from modules.app_context import AppContext
    from modules.settings_layout import SettingEntry

#: the widget of a setting that is not a Settings field (an extension option): ``(entry, value) -> widget``
WidgetMaker = Callable[["SettingEntry", Any], Any]


@dataclass
class SettingsTab:
    components: dict[str, Any]
    apply: Any
    status: Any
    search: Any = None
    sections: dict[str, Any] = field(default_factory=dict)
    #: ``() -> updates`` for :attr:`widgets`: the values in force (webui/tools.py wire_page_load calls it at page
    #: load, one event for the whole tab)
    refresh: Any = None
    widgets: list[Any] = field(default_factory=list)


def _bounds(info: Any) -> tuple[float | None, float | None]:
    low = high = None
    for item in info.metadata:
        low = getattr(item, "ge", low)
        high = getattr(item, "le", high)
    return low, high


def vae_choices(ctx: "AppContext") -> list[str]:
    """The ``sd_vae`` dropdown: Automatic, None, then the files of models/VAE (A1111's list)."""
    from modules.generation.addons.network_files import list_files

    files = list_files([ctx.paths.vae_dir], (".safetensors", ".pt", ".ckpt"))
    return ["Automatic", "None", *[path.name for path in files]]


def shown_value(ctx: "AppContext", name: str, value: Any) -> Any:
    """What a settings widget shows: the checkpoint field shows the model that is loaded."""
    if name == "sd_model_checkpoint":
        return active_title(ctx) or value or None
    return value


def widget_for(ctx: "AppContext", name: str, info: Any, value: Any, read_only: bool, *, label: str | None = None,
               elem_id: str | None = None, live: bool = False, **extra: Any) -> Any:
    """The Gradio widget for one settings field (label: its description, info: its key); ``live``: its value is
    read from the settings at every page load (a :class:`modules.settings.Settings` field)."""
    from modules.settings import Settings

    label, hint = label or info.description or name, name
    common = {"label": label, "info": hint, "elem_id": elem_id or f"setting_{name}", "interactive": not read_only,
              **extra}
    annotation = info.annotation
    value = shown_value(ctx, name, value)
    if name == "sd_model_checkpoint":  # the loaded model, looked up at every page load
        def loaded() -> Any:
            return shown_value(ctx, name, ctx.settings.current.sd_model_checkpoint)

        return gr.Dropdown(checkpoint_titles(ctx), value=loaded, allow_custom_value=True, **common)
    shown: Any = _widget_value(name, annotation, value)
    if live:  # read at every page load: a change made elsewhere (the API, the other bar) shows after a reload
        def now() -> Any:
            return _widget_value(name, annotation, shown_value(ctx, name, getattr(ctx.settings.current, name, None)))

        shown = now
    if name == "sd_vae":
        choices = vae_choices(ctx)
        return gr.Dropdown(choices if value in choices else [*choices, value], value=shown, **common)
    if name == "quicksettings_list":
        return gr.Dropdown([key for key in Settings.model_fields], value=shown, multiselect=True, **common)
    if typing.get_origin(annotation) is typing.Literal:
        return gr.Dropdown(list(typing.get_args(annotation)), value=shown, **common)
    if annotation is bool:
        return gr.Checkbox(value=shown, **common)
    if annotation is int or annotation is float:
        low, high = _bounds(info)
        if low is not None and high is not None and high - low <= 1000:
            return gr.Slider(low, high, value=shown, step=1 if annotation is int else 0.01, **common)
        return gr.Number(value=shown, precision=0 if annotation is int else None, **common)
    return gr.Textbox(value=shown, lines=2 if _structured(annotation) else 1, **common)


def _widget_value(name: str, annotation: Any, value: Any) -> Any:
    """A setting's value as its widget takes it: a list for the quicksettings, JSON text for other tables and
    lists, text for a text box."""
    if name == "quicksettings_list":
        return list(value or [])
    if _structured(annotation):
        return json.dumps(value)
    if (annotation in (bool, int, float) or typing.get_origin(annotation) is typing.Literal
            or name in ("sd_vae", "sd_model_checkpoint")):
        return value
    return "" if value is None else str(value)


def _structured(annotation: Any) -> bool:
    return annotation in (dict, list) or typing.get_origin(annotation) in (dict, list)


def coerce(info: Any, value: Any) -> Any:
    """A widget's value as the setting's type (sliders give floats, JSON text for tables and lists); text that
    is not JSON raises ValueError."""
    if info.annotation is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if _structured(info.annotation) and isinstance(value, str):
        try:
            return json.loads(value or "null")
        except json.JSONDecodeError:
            raise ValueError(f"not JSON: {value[:60]!r}") from None
    return value


def section_id(section: str) -> str:
    return "settings_section_" + re.sub(r"[^a-z0-9]+", "_", section.lower()).strip("_")


def apply_changes(ctx: "AppContext", changes: dict[str, Any]) -> tuple[bool, str]:
    """Apply settings changes from the page: (ok, the message). A new checkpoint is loaded in the background
    (its load job records the setting once it succeeded)."""
    from modules.models.load_job import switch_model
    from modules.settings import SettingsError

    changes = dict(changes)
    note = ""
    model = changes.pop("sd_model_checkpoint", None)
    if model and model != active_title(ctx):
        try:
            switch_model(ctx, model, owner="webui")
            note = f" Loading {model} in the background."
        except Exception as exc:  # noqa: BLE001 - an unknown checkpoint: say so, keep the rest
            return False, readable(exc)
    elif not changes:
        return True, "Nothing changed."
    try:
        if changes:
            ctx.settings.update(changes)
    except SettingsError as exc:
        return False, readable(exc)
    listed = ", ".join(sorted(changes)) or "checkpoint"
    return True, f"Saved {len(changes) or 1} setting(s): {listed}; they apply from the next generation.{note}"


def build_settings_tab(ctx: "AppContext") -> SettingsTab:
    from modules.settings import READ_ONLY, Settings
    from modules.settings_layout import entries_of, grouped, quicksettings

    current = ctx.settings.as_dict()
    fields = Settings.model_fields
    entries = entries_of(fields)
    # the quicksettings bar has the A1111 ids (setting_<key>); their copies here get settings_<key>
    quick = set(quicksettings(current.get("quicksettings_list"), fields))
    with gr.Row(equal_height=True):
        # filtered in the page as the user types: webui/js/settings_search.js
        query = gr.Textbox(placeholder="Search settings (name, key or section)", show_label=False, scale=3,
                           elem_id="settings_search", container=False, max_lines=1)
        apply = gr.Button("Apply settings", variant="primary", elem_id="settings_submit", scale=1)
        reload = gr.Button("Reload from disk", elem_id="settings_reload", scale=1)
    status = gr.HTML(status_html(f"Saved to {ctx.paths.shown(ctx.paths.settings_file)}; per-field UI defaults: "
                                 f"{ctx.paths.shown(ctx.paths.data_dir / 'ui-config.json')} (read at start-up)"),
                     elem_id="settings_status")
    components: dict[str, Any] = {}
    sections: dict[str, Any] = {}
    with gr.Column(elem_id="settings"):
        for section, listed in grouped(entries):
            with gr.Group(elem_id=section_id(section), elem_classes=["atelier-settings-section"]) as group:
                gr.Markdown(f"### {section}", elem_classes=["atelier-settings-title"])
                for entry in listed:
                    components[entry.key] = widget_for(ctx, entry.key, fields[entry.key], current.get(entry.key),
                                                       entry.key in READ_ONLY, label=entry.label,
                                                       elem_id=f"settings_{entry.key}" if entry.key in quick else None)
            sections[section] = group
    build_extension_options(ctx)  # approved extensions' ui_settings options, with their own Apply button
    build_hf_token_section(ctx)  # a password field: saved beside the settings, never shown back
    names = [name for name in fields if name in components]  # /settings takes the values in the model's order

    def shown(name: str, value: Any) -> Any:
        return _widget_value(name, fields[name].annotation, shown_value(ctx, name, value))

    def on_apply(*values: Any) -> list[Any]:
        now = ctx.settings.as_dict()
        changes = {}
        for name, value in zip(names, values):
            if name in READ_ONLY:
                continue
            try:
                value = coerce(fields[name], value)
            except ValueError as exc:
                return [gr.skip() for _ in names] + [status_html(f"{name}: {exc}", "error")]
            if value != shown_value(ctx, name, now.get(name)):
                changes[name] = value
        ok, message = apply_changes(ctx, changes)
        if not ok:
            return [gr.skip() for _ in names] + [status_html(message, "error")]
        data = ctx.settings.as_dict()
        return [gr.update(value=shown(n, data.get(n))) for n in names] + [status_html(
            message, "ok" if changes else "info")]

    def current_values() -> list[Any]:
        data = ctx.settings.as_dict()
        return [gr.update(value=shown(n, data.get(n))) for n in names]

    def on_reload() -> list[Any]:
        return current_values() + [status_html("Reloaded.")]

    widgets = [components[n] for n in names]
    apply.click(on_apply, inputs=widgets, outputs=[*widgets, status], api_name="settings")
    reload.click(on_reload, outputs=[*widgets, status], api_visibility="private")
    return SettingsTab(components, apply, status, query, sections, current_values, widgets)
