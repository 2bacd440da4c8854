"""The quicksettings bar in the page's header row (A1111's ``quicksettings_list``): one widget per chosen
setting beside the checkpoint picker (which the header builds itself), saved as soon as it changes.

Which settings: the ``quicksettings_list`` setting (default: checkpoint, VAE, clip skip), read when the page
is built (:func:`modules.settings_layout.quicksettings`); the widgets are the Settings tab's
(:func:`webui.settings_tab.widget_for`) with A1111's ids, ``setting_<key>``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gradio as gr

from webui.common import error

if TYPE_CHECKING:
    from modules.app_context import AppContext

#: built by the header itself (the checkpoint picker, its refresh button and the load status)
BUILT_BY_HEADER = frozenset({"sd_model_checkpoint"})


def build_quicksettings(ctx: "AppContext") -> dict[str, Any]:
    """The bar's widgets (call inside the header row), each saving its setting when the user changes it."""
    from modules.settings import READ_ONLY, Settings, SettingsError
    from modules.settings_layout import quicksettings
    from webui.settings_tab import coerce, widget_for

    current = ctx.settings.as_dict()
    fields = Settings.model_fields
    widgets: dict[str, Any] = {}
    for key in quicksettings(current.get("quicksettings_list"), fields):
        if key in BUILT_BY_HEADER:
            continue
        widgets[key] = widget_for(ctx, key, fields[key], current.get(key), key in READ_ONLY, live=True, scale=2,
                                  min_width=160)

    for key, widget in widgets.items():
        def save(value: Any, key: str = key) -> None:
            try:
                ctx.settings.update({key: coerce(fields[key], value)})
            except SettingsError as exc:
                raise error(exc) from None

        widget.input(save, inputs=[widget], queue=False, show_progress="hidden", api_visibility="private")
    return widgets
