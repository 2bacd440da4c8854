"""The Settings tab's extension options (``ui_settings`` callbacks of approved extensions): one group per
section, stored in the settings file by :class:`modules.scripts.ext_settings.ExtensionOptions`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gradio as gr

from webui.common import readable, status_html

if TYPE_CHECKING:
    from modules.app_context import AppContext


def _widget(option: Any, value: Any) -> Any:
    common = {"label": option.label, "info": f"{option.key} ({option.owner})", "elem_id": f"setting_{option.key}"}
    if isinstance(value, bool):
        return gr.Checkbox(value=value, **common)
    if isinstance(value, (int, float)):
        return gr.Number(value=value, precision=0 if isinstance(option.default, int) else None, **common)
    return gr.Textbox(value="" if value is None else str(value), **common)


def build_extension_options(ctx: "AppContext") -> None:
    """Nothing when no approved extension declares an option."""
    from modules.scripts.ext_settings import ExtensionOptionError, ExtensionOptions

    if ctx.scripts is None:
        return
    store = ExtensionOptions.for_context(ctx)
    options = store.declared()
    if not options:
        return
    values = store.values()
    components: dict[str, Any] = {}
    with gr.Column(elem_id="settings_extensions"):
        for section in dict.fromkeys(option.section for option in options):
            with gr.Group(elem_classes=["atelier-settings-section"]):  # looks like the tab's own sections
                gr.Markdown(f"### {section}", elem_classes=["atelier-settings-title"])
                for option in (o for o in options if o.section == section):
                    components[option.key] = _widget(option, values.get(option.key))
        apply = gr.Button("Apply extension options", elem_id="settings_extensions_submit")
        status = gr.HTML("", elem_id="settings_extensions_status")
    keys = list(components)

    def on_apply(*given: Any) -> list[Any]:
        now = store.values()
        changes = {}
        for key, value in zip(keys, given):
            default = next(o.default for o in options if o.key == key)
            if isinstance(default, int) and not isinstance(default, bool) and isinstance(value, float) \
                    and value.is_integer():
                value = int(value)
            if value != now.get(key):
                changes[key] = value
        if not changes:
            return [gr.skip() for _ in keys] + [status_html("Nothing changed.")]
        try:
            saved = store.update(changes)
        except ExtensionOptionError as exc:
            return [gr.skip() for _ in keys] + [status_html(readable(exc), "error")]
        return [gr.update(value=saved.get(k)) for k in keys] + [status_html(
            f"Saved {', '.join(sorted(changes))}.", "ok")]

    apply.click(on_apply, inputs=[components[k] for k in keys], outputs=[*components.values(), status],
                api_visibility="private")
