"""Assemble the HTTP app: API routers (behind their auth), then the Gradio UI (behind its own).

No CORS middleware is installed (browsers on other origins get no access), and the API is
mounted only with ``--api``/``--nowebui``, as in A1111.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Callable

from fastapi import Depends, FastAPI

from modules.api.auth import basic_auth_dependency
from modules.api.errors import install_error_handlers
from modules.version import VERSION

if TYPE_CHECKING:
    from modules.app_context import AppContext

log = logging.getLogger(__name__)


def create_http_app(ctx: "AppContext", *, with_ui: bool | None = None) -> FastAPI:
    """The whole studio as one ASGI app. ``with_ui`` defaults to ``not --nowebui``."""
    from modules.api.sdapi import build_sdapi_router

    with_ui = (not ctx.flags.nowebui) if with_ui is None else with_ui
    app = FastAPI(title="Atelier", version=VERSION, docs_url="/docs", redoc_url=None)
    install_error_handlers(app)
    api_auth = basic_auth_dependency(ctx.flags.api_auth)
    deps = [api_auth] if api_auth else []

    @app.get("/internal/ping", dependencies=[Depends(d) for d in deps])
    def ping() -> dict[str, str]:
        return {"status": "ok", "version": VERSION}

    if ctx.flags.api_enabled:
        app.include_router(build_sdapi_router(ctx, deps))
    if with_ui:
        import gradio as gr

        from webui.app import build_ui

        blocks = build_ui(ctx)
        auth = list(ctx.flags.gradio_auth) or None
        app = gr.mount_gradio_app(app, blocks, path="", auth=auth, show_error=True,
                                  footer_links=["api"] if ctx.flags.api_enabled else [])
    return app


def load_model_at_start(ctx: "AppContext") -> None:
    """Queue the start-up model load (after the server is up: never on the startup path)."""
    from modules.generation import service
    from modules.models.errors import ModelLoadError

    if ctx.flags.skip_load_model_at_start:
        return
    info = ctx.models.default_checkpoint(ctx.flags.ckpt or ctx.settings.current.sd_model_checkpoint or None)
    if info is None:
        log.warning("No checkpoint found in %s; put one there and press refresh",
                    ", ".join(str(p) for p in ctx.paths.ckpt_dirs))
        return
    try:
        service.submit_model_switch(ctx, str(info.path), owner="startup")
    except ModelLoadError as exc:
        log.error("%s", exc)


def serve(ctx: "AppContext", *, on_ready: Callable[[], None] | None = None) -> None:
    """Run uvicorn until interrupted; queue the start-up model load once it listens."""
    import time

    import uvicorn

    app = create_http_app(ctx)
    config = uvicorn.Config(app, host=ctx.flags.host, port=ctx.flags.effective_port, log_level="warning",
                            timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)

    def when_listening() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.05)
        if server.started:
            load_model_at_start(ctx)
            if on_ready is not None:
                on_ready()

    threading.Thread(target=when_listening, name="atelier-startup", daemon=True).start()
    server.run()
