"""The scripts of txt2img and img2img: a **Script** dropdown (None and the tab's selectable scripts) with the
chosen script's argument widgets under it, and an accordion per always-on script.

Widgets come from each script's ``Args`` (see :mod:`modules.scripts.arg_widgets`), or from its
``build_ui(tab)`` when that returns widgets by field name. They are registered in the tab's
:class:`~webui.params.Fields` as ``script::<title>::<arg>`` (the dropdown as :data:`SELECT`);
:func:`collect_scripts` folds them into the request's ``script`` and ``alwayson_scripts``. Pasting an
infotext runs the ``infotext_pasted`` callbacks and fills the dropdown and widgets from the script's
``args_from_infotext`` (a paster registered on the fields).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import gradio as gr

if TYPE_CHECKING:
    from modules.app_context import AppContext
    from modules.scripts.arg_widgets import WidgetSpec
    from modules.scripts.script import Script
    from webui.params import Fields
    from webui.ui_config import UiDefaults

SELECT = "script::"
ARG_PREFIX = "script::"
NONE = "None"


def arg_key(title: str, arg: str) -> str:
    return f"{ARG_PREFIX}{title}::{arg}"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "script"


def _component(spec: "WidgetSpec", elem_id: str) -> Any:
    common = {"label": spec.label, "info": spec.info or None, "elem_id": elem_id}
    if spec.kind == "checkbox":
        return gr.Checkbox(value=spec.default, **common)
    if spec.kind == "slider":
        return gr.Slider(spec.minimum, spec.maximum, value=spec.default, step=spec.step, **common)
    if spec.kind == "number":
        return gr.Number(value=spec.default, precision=0 if spec.integer else None, **common)
    if spec.kind == "dropdown":
        return gr.Dropdown(list(spec.choices), value=spec.default, **common)
    if spec.kind == "json":
        return gr.Textbox(value=spec.default, lines=2, **{**common, "info": (spec.info + " (JSON)").strip()})
    return gr.Textbox(value=spec.default, lines=1, **common)


def _script_widgets(ctx: "AppContext", tab: str, fields: "Fields", script: "Script") -> None:
    from modules.scripts.arg_widgets import widget_specs

    own: dict[str, Any] | None = None
    try:
        own = script.build_ui(tab)
    except Exception as exc:  # noqa: BLE001 - the generated widgets stand in; the fault is reported
        ctx.scripts.callbacks.report(script.source, f"{script.title}.build_ui", exc)
    if own:
        for name, component in own.items():
            if name in script.Args.model_fields:
                fields.add(arg_key(script.title, name), component)
        return
    base = f"{tab}_script_{_slug(script.title)}"
    for spec in widget_specs(script.Args):
        fields.add(arg_key(script.title, spec.name), _component(spec, f"{base}_{spec.name}"))


def build_scripts(ctx: "AppContext", ui: "UiDefaults", tab: str, fields: "Fields") -> None:
    host = ctx.scripts
    if host is None:
        return
    selectable = host.registry.selectable(tab)
    titles = [script.title for script in selectable]
    dropdown = fields.add(SELECT, gr.Dropdown([NONE, *titles], value=NONE, label="Script",
                                              elem_id=f"{tab}_script_list"))
    groups = []
    for script in selectable:
        with gr.Column(visible=False, elem_id=f"{tab}_script_{_slug(script.title)}") as group:
            _script_widgets(ctx, tab, fields, script)
        groups.append(group)
    if groups:
        dropdown.change(lambda name: [gr.update(visible=name == title) for title in titles], inputs=[dropdown],
                        outputs=groups, queue=False, show_progress="hidden", api_visibility="private")
    for script in host.registry.alwayson(tab):
        with gr.Accordion(script.title, open=False, elem_id=f"{tab}_script_{_slug(script.title)}"):
            if script.source != "built-in":
                gr.Markdown(f"from {script.source}", elem_classes=["script-source"])
            _script_widgets(ctx, tab, fields, script)
    fields.pasters.append(lambda text, params: _pasted(ctx, tab, fields, text, params))


def _pasted(ctx: "AppContext", tab: str, fields: "Fields", text: str, params: dict[str, Any]) -> dict[str, Any]:
    """Field values for a pasted infotext: the script that wrote it and its arguments."""
    from modules.scripts.arg_widgets import widget_specs, widget_value
    from modules.scripts.ui_hooks import alwayson_pasted, pasted_script

    fills: dict[str, Any] = {}
    found = [pasted_script(ctx.scripts, text, params, tab), *alwayson_pasted(ctx.scripts, params, tab)]
    for index, item in enumerate(found):
        script = ctx.scripts.registry.get(item.title) if item is not None else None
        if script is None:
            continue
        if index == 0:
            fills[SELECT] = script.title
        for used in item.used:  # read by the script: not listed as "not applied"
            params.pop(used, None)
        specs = {spec.name: spec for spec in widget_specs(script.Args)}
        for arg, value in item.args.items():
            key = arg_key(script.title, arg)
            if key in fields.components and arg in specs:
                fills[key] = widget_value(specs[arg], value)
    return fills


def collect_scripts(values: dict[str, Any], tab: str, ctx: "AppContext | None" = None) -> dict[str, Any]:
    """Request kwargs with the script widgets folded into ``script`` and ``alwayson_scripts``. An always-on
    script disabled since the page was built is left out (it no longer runs)."""
    from modules.scripts.arg_widgets import args_from_widgets

    out = {key: value for key, value in values.items() if not key.startswith(ARG_PREFIX)}
    if ctx is None or ctx.scripts is None:
        return out
    registry = ctx.scripts.registry
    raw: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        if key.startswith(ARG_PREFIX) and key != SELECT:
            title, arg = key[len(ARG_PREFIX):].rsplit("::", 1)
            raw.setdefault(title, {})[arg] = value
    chosen = values.get(SELECT)
    if chosen and chosen != NONE:
        script = registry.get(chosen)
        args = args_from_widgets(chosen, script.Args, raw.get(chosen, {})) if script is not None else {}
        out["script"] = {"name": chosen, "args": args}  # a script gone since is refused by the precheck, named
    alwayson: dict[str, dict[str, Any]] = {}
    for title, given in raw.items():
        script = registry.get(title)
        if script is not None and script.alwayson and script.shows_in(tab):
            alwayson[script.title] = args_from_widgets(script.title, script.Args, given)
    if alwayson:
        out["alwayson_scripts"] = alwayson
    return out
