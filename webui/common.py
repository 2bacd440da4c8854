"""Small pieces every tab uses: readable errors, the job owner of a browser session, choice lists."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import gradio as gr

if TYPE_CHECKING:
    from modules.app_context import AppContext


def readable(exc: BaseException) -> str:
    """One readable line for an exception (pydantic errors name the field)."""
    errors = getattr(exc, "errors", None)
    if callable(errors):  # pydantic ValidationError
        try:
            first = errors()[0]
        except (TypeError, IndexError):
            first = None
        if first:
            where = ".".join(str(p) for p in first.get("loc", ()))
            message = str(first.get("msg", "")).removeprefix("Value error, ")
            return f"{where}: {message}" if where else message
    return str(exc) or type(exc).__name__


def error(exc: BaseException | str) -> gr.Error:
    """A ``gr.Error`` whose toast shows the message (never an empty red "Error")."""
    message = exc if isinstance(exc, str) else readable(exc)
    return gr.Error(html.escape(message, quote=False), print_exception=False)  # the toast renders HTML


def owner_of(request: gr.Request | None) -> str:
    """The queue owner of a browser session: the logged-in user, else "webui"."""
    user = getattr(request, "username", None) if request is not None else None
    return f"webui:{user}" if user else "webui"


def status_html(text: str, kind: str = "info") -> str:
    """A one-line status for the page (``kind``: info, ok, warn, error)."""
    colour = {"info": "inherit", "ok": "#15803d", "warn": "#b45309", "error": "#b91c1c"}.get(kind, "inherit")
    return f'<div class="atelier-status" data-kind="{kind}" style="color:{colour}">{html.escape(text)}</div>'


def sampler_names() -> list[str]:
    from modules.generation.sampling.samplers import list_samplers

    return [s["name"] for s in list_samplers(None)]


def schedule_labels() -> list[str]:
    from modules.generation.sampling.samplers import list_schedules

    return [s["label"] for s in list_schedules()]


def checkpoint_titles(ctx: "AppContext") -> list[str]:
    return [ctx.catalog.title(info) for info in ctx.catalog.list()]


def active_title(ctx: "AppContext") -> str | None:
    active = ctx.models.active
    return ctx.catalog.title(active.info) if active else None


def upscaler_names(ctx: "AppContext", *, latent: bool) -> list[str]:
    return ctx.upscalers.names(latent=latent)


def as_int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default
