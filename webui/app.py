"""The Gradio studio: a checkpoint picker on top, one tab per capability below.

The UI is thin: it builds typed requests, submits them to the job queue through
``modules.generation.service`` and renders what comes back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import gradio as gr

from webui.txt2img_tab import build_txt2img_tab

if TYPE_CHECKING:
    from modules.app_context import AppContext


def _checkpoint_titles(ctx: "AppContext") -> list[str]:
    return [ctx.catalog.title(info) for info in ctx.catalog.list()]


def _active_title(ctx: "AppContext") -> str | None:
    active = ctx.models.active
    return ctx.catalog.title(active.info) if active else None


def build_ui(ctx: "AppContext") -> gr.Blocks:
    with gr.Blocks(title="Atelier") as demo:
        with gr.Row():
            checkpoint = gr.Dropdown(_checkpoint_titles(ctx), value=_active_title(ctx),
                                     label="Stable Diffusion checkpoint", elem_id="setting_sd_model_checkpoint",
                                     scale=4)
            refresh = gr.Button("🔄 Refresh", scale=1, elem_id="refresh_sd_model_checkpoint")
            model_status = gr.Markdown("", elem_id="model_status")
        with gr.Tabs():
            with gr.Tab("txt2img", id="txt2img"):
                build_txt2img_tab(ctx)

        def switch(title: str) -> str:
            from modules.generation.service import submit_model_switch
            from modules.jobs.queue import JobState

            if not title or title == _active_title(ctx):
                return ""
            try:
                job = submit_model_switch(ctx, title, owner="webui")
            except Exception as exc:  # noqa: BLE001 - shown to the user
                raise gr.Error(str(exc)) from None
            job.done.wait()
            if job.state is JobState.FAILED:
                raise gr.Error(job.error or "model switch failed")
            return f"Loaded {title}"

        def do_refresh() -> dict:
            ctx.catalog.refresh()
            return gr.update(choices=_checkpoint_titles(ctx), value=_active_title(ctx))

        def on_load() -> dict:
            return gr.update(choices=_checkpoint_titles(ctx), value=_active_title(ctx))

        checkpoint.input(switch, inputs=[checkpoint], outputs=[model_status])
        refresh.click(do_refresh, outputs=[checkpoint], queue=False)
        demo.load(on_load, outputs=[checkpoint], queue=False)
    return demo
