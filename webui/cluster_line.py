"""The Models tab's line about the Ray actors (``--ray``): each one's device, loaded model and job.

Built only when the studio runs with ``--ray``; it is read when the page loads, on the tab's Refresh
and every few seconds (the logic is :func:`modules.distributed.status.cluster_line`)."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import gradio as gr

if TYPE_CHECKING:
    from modules.app_context import AppContext

REFRESH_SECONDS = 5.0


def cluster_html(ctx: "AppContext") -> str:
    from modules.distributed.status import cluster_line

    return f"<div class='atelier-cluster'>{html.escape(cluster_line(ctx))}</div>"


def build_cluster_line(ctx: "AppContext", refresh: Any) -> gr.HTML | None:
    """The line (None without ``--ray``); ``refresh`` (a button) reads it again."""
    if ctx.cluster is None:
        return None
    line = gr.HTML(lambda: cluster_html(ctx), elem_id="models_cluster", every=gr.Timer(REFRESH_SECONDS))
    refresh.click(lambda: cluster_html(ctx), outputs=[line], api_visibility="private")
    return line
