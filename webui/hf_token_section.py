"""The Settings tab's Hugging Face token: a password field saved to ``<data dir>/hf_token.txt`` (owner only),
never shown back, never part of the settings file or ``/sdapi/v1/options`` (modules/models/hf_download.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gradio as gr

from webui.common import readable, status_html

if TYPE_CHECKING:
    from modules.app_context import AppContext


def build_hf_token_section(ctx: "AppContext") -> None:
    from modules.models.hf_download import token_state

    with gr.Group(elem_id="settings_hf_token", elem_classes=["atelier-settings-section"]):
        gr.Markdown("### Hugging Face", elem_classes=["atelier-settings-title"])
        token = gr.Textbox(type="password", value="", label="Hugging Face token (for gated or private repos)",
                           info="Saved in the data dir, readable by you only; never shown again, never in logs or "
                                "images. Empty + Save forgets it (then HF_TOKEN from the environment is used).",
                           elem_id="settings_hf_token_value")
        save = gr.Button("Save token", elem_id="settings_hf_token_save")
        status = gr.HTML(status_html(token_state(ctx.paths).describe()), elem_id="settings_hf_token_status")

    def on_save(value: str) -> tuple[Any, str]:
        from modules.models.hf_download import save_token

        try:
            state = save_token(ctx.paths, value or "")
        except Exception as exc:  # noqa: BLE001 - said in the page, without the value
            return "", status_html(f"Not saved: {readable(exc)}", "error")
        return "", status_html(state.describe(), "ok")

    save.click(on_save, inputs=[token], outputs=[token, status], api_visibility="private", show_progress="hidden")
