"""The Models tab's "Backend and memory" section: the device and dtype, the picked checkpoint's backend with a
picker that writes ``backend_by_model``, the memory mode in force and the last job's memory line. Thin: the
facts and the write come from :mod:`modules.backends.status`."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import gradio as gr

from webui.common import readable, status_html

if TYPE_CHECKING:
    from modules.app_context import AppContext


def status_table(rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{html.escape(label)}</th><td>{html.escape(value)}</td></tr>" for label, value in rows)
    return f"<table class='atelier-backend-status'>{body}</table>"


def build_backend_picker(ctx: "AppContext", picker: Any, refresh: Any) -> None:
    """The section, following the tab's checkpoint ``picker`` (and its Refresh button)."""
    from modules.backends.registry import BACKENDS
    from modules.backends.status import DEFAULT, backend_status, own_choice, set_model_backend

    choices = [("Default (Settings: sd_backend, or --backend)", DEFAULT),
               *((backend.label, name) for name, backend in BACKENDS.items())]
    with gr.Accordion("Backend and memory", open=False, elem_id="models_backend") as section:
        info = gr.HTML("", elem_id="models_backend_status")
        with gr.Row():
            chosen = gr.Dropdown(choices, value=DEFAULT, label="Backend of this checkpoint", scale=3,
                                 elem_id="models_backend_choice")
            save = gr.Button("Save backend", elem_id="models_backend_save", scale=1)
        message = gr.HTML("", elem_id="models_backend_message")

    def show(title: str) -> tuple[str, Any]:
        try:
            own = own_choice(ctx, title) if title else DEFAULT
        except LookupError:
            own = DEFAULT
        return status_table(backend_status(ctx, title)), gr.update(value=own)

    def on_save(title: str, backend: str) -> tuple[str, str]:
        try:
            said = set_model_backend(ctx, title, backend)
        except Exception as exc:  # noqa: BLE001 - unknown checkpoint, backend not installed: shown to the user
            return status_html(readable(exc), "error"), status_table(backend_status(ctx, title))
        return status_html(said, "ok"), status_table(backend_status(ctx, title))

    section.expand(show, inputs=[picker], outputs=[info, chosen], api_visibility="private")
    picker.change(show, inputs=[picker], outputs=[info, chosen], api_visibility="private")
    refresh.click(show, inputs=[picker], outputs=[info, chosen], api_visibility="private")
    save.click(on_save, inputs=[picker, chosen], outputs=[message, info], api_visibility="private")
