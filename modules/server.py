"""Assemble the HTTP app: API routers, the Gradio UI, and the middleware that guards them all.

* Auth (``--api-auth`` users, ``--api-key`` keys) is an app-level middleware covering every
  route that is not the Gradio UI mount, including routes added later (see :mod:`modules.api.security`).
* Request bodies over ``--max-body-mb`` are refused with a JSON 413 (:mod:`modules.api.body_limit`).
* Unknown ``Host`` names are refused (421) while any surface has no login: no DNS rebinding
  (:mod:`modules.api.host_guard`).
* CORS is off unless ``--cors-allow-origins``/``--cors-allow-origins-regex`` is given.
* The API is mounted only with ``--api``/``--nowebui``, as in A1111; the server binds
  127.0.0.1 unless ``--listen``.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, Callable

from fastapi import FastAPI
from pydantic import BaseModel
from starlette.routing import Mount
from starlette.types import ASGIApp

from modules.api.body_limit import BodyLimitMiddleware
from modules.api.errors import install_error_handlers
from modules.api.host_guard import HostGuardMiddleware, needs_host_check
from modules.api.security import ApiCredentials, AuthMiddleware, ui_route_matcher
from modules.version import VERSION

if TYPE_CHECKING:
    from modules.app_context import AppContext

log = logging.getLogger(__name__)


class PingResponse(BaseModel):
    status: str
    version: str


def create_http_app(ctx: "AppContext", *, with_ui: bool | None = None) -> FastAPI:
    """The whole studio as one ASGI app. ``with_ui`` defaults to ``not --nowebui``."""
    from modules.api.cluster_routes import build_cluster_router
    from modules.api.controlnet_routes import build_controlnet_router
    from modules.api.extra_networks_routes import build_extra_networks_router
    from modules.api.jobs_api import build_jobs_router
    from modules.api.model_library_routes import build_model_library_router
    from modules.api.openai_routes import build_openai_router
    from modules.api.sdapi import build_sdapi_router

    with_ui = (not ctx.flags.nowebui) if with_ui is None else with_ui
    app = FastAPI(title="Atelier", version=VERSION, docs_url="/docs", redoc_url=None, openapi_url="/openapi.json",
                  description="A1111-compatible API (/sdapi/v1) and the native job API (/api/v1).")
    install_error_handlers(app)

    @app.get("/internal/ping", response_model=PingResponse, tags=["internal"])
    def ping() -> PingResponse:
        return PingResponse(status="ok", version=VERSION)

    if ctx.flags.api_enabled:
        app.include_router(build_sdapi_router(ctx))
        app.include_router(build_jobs_router(ctx))
        app.include_router(build_controlnet_router(ctx, annotators=ctx.addons.annotators if ctx.addons else None))
        app.include_router(build_openai_router(ctx))
        app.include_router(build_extra_networks_router(ctx))
        app.include_router(build_model_library_router(ctx))
        app.include_router(build_cluster_router(ctx))
    ui_app = None
    if with_ui:
        from webui.mount import mount_ui

        app, ui_app = mount_ui(app, ctx)
        _ui_as_fallback(app, ui_app)
    install_middleware(app, ctx, ui_app is not None)
    install_openapi(app, ctx)
    if ctx.scripts is not None:  # extensions add their routes here; the auth middleware covers them (not UI routes)
        from modules.scripts.callbacks import AppStarted

        ctx.scripts.callbacks.fire("app_started", AppStarted(app=app, ctx=ctx))
    return app


def install_openapi(app: FastAPI, ctx: "AppContext") -> None:
    """The OpenAPI document, completed with what the middleware and error handlers really answer:
    every error is the JSON ``ErrorBody``; 401 when credentials are configured; 400 (an unparseable body)
    and 413 (an oversized one) wherever a body is taken."""
    from modules.api.errors import ErrorBody, error_responses

    build = app.openapi

    def openapi() -> dict:  # FastAPI's documented way to extend the document; patching is idempotent
        doc = build()
        ref = {"$ref": "#/components/schemas/ErrorBody"}
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        schemas.setdefault("ErrorBody", ErrorBody.model_json_schema())
        for schema in ("HTTPValidationError", "ValidationError"):
            schemas.pop(schema, None)
        extra = {401: ctx.flags.api_auth_enabled, 400: True, 413: True}
        for path_item in doc.get("paths", {}).values():
            for operation in path_item.values():
                responses = operation.setdefault("responses", {})
                for code, wanted in extra.items():
                    if wanted and (code == 401 or "requestBody" in operation):
                        responses.setdefault(str(code), {"description": error_responses(code)[code]["description"]})
                for code, response in responses.items():
                    if code.isdigit() and int(code) >= 400:
                        response["content"] = {"application/json": {"schema": ref}}
        if ctx.flags.api_auth_enabled:
            schemes = {}
            if ctx.flags.api_auth:
                schemes["basicAuth"] = {"type": "http", "scheme": "basic"}
            if ctx.flags.api_keys:
                schemes["bearerAuth"] = {"type": "http", "scheme": "bearer"}
                schemes["apiKeyHeader"] = {"type": "apiKey", "in": "header", "name": "X-API-Key"}
            doc["components"]["securitySchemes"] = schemes
            doc["security"] = [{name: []} for name in schemes]
        return doc

    app.openapi = openapi  # type: ignore[method-assign]


def _ui_as_fallback(app: FastAPI, ui_app: ASGIApp) -> None:
    """Serve the Gradio UI (``ui_app``, the mounted app as wrapped by :mod:`webui.mount`) for every
    request no other route matches.

    ``mount_gradio_app`` mounts the UI at "" as an ordinary route, which would shadow every route
    added after it (an extension's, say). The UI becomes the router's fallback instead, so routes
    added at any time are matched first (and guarded by the API auth middleware).
    """
    mount = next(r for r in app.router.routes if isinstance(r, Mount) and r.path == "")
    app.router.routes.remove(mount)
    app.router.default = ui_app


def install_middleware(app: FastAPI, ctx: "AppContext", with_ui: bool) -> None:
    """Outermost first: the Host check (when some surface has no login; it must see every request,
    preflights included, see :mod:`modules.api.host_guard`), CORS (answers preflights), auth, body
    size limit, then the routes. Starlette runs the middleware added last first."""
    flags = ctx.flags
    app.add_middleware(BodyLimitMiddleware, max_bytes=flags.max_body_mb * 1024 * 1024)
    credentials = ApiCredentials(users=flags.api_auth, keys=flags.api_keys)
    app.add_middleware(AuthMiddleware, credentials=credentials,
                       is_ui=ui_route_matcher(lambda: app.router.routes, with_ui))
    if flags.cors_allow_origins or flags.cors_allow_origins_regex:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(flags.cors_allow_origins),
                           allow_origin_regex=flags.cors_allow_origins_regex, allow_methods=["*"],
                           allow_headers=["*"], allow_credentials=True)
    if needs_host_check(flags, with_ui):
        app.add_middleware(HostGuardMiddleware, allowed=flags.allowed_hosts)


def load_model_at_start(ctx: "AppContext") -> None:
    """Queue the start-up model load (after the server is up: never on the startup path)."""
    from modules.models.errors import ModelLoadError
    from modules.models.load_job import switch_model

    if ctx.flags.skip_load_model_at_start:
        return
    info = ctx.models.default_checkpoint(ctx.flags.ckpt or ctx.settings.current.sd_model_checkpoint or None)
    if info is None:
        log.warning("No checkpoint found in %s; put one there and press refresh",
                    ", ".join(str(p) for p in ctx.paths.ckpt_dirs))
        return
    try:
        switch_model(ctx, str(info.path), owner="startup")
    except ModelLoadError as exc:
        log.error("%s", exc)


def _stopping_server(uvicorn: Any, config: Any, *, on_stop: Callable[[], None]) -> Any:
    """uvicorn's server, calling ``on_stop`` the moment SIGINT/SIGTERM arrives: the running job is
    interrupted at its next step instead of holding the graceful shutdown open (a caller blocked on
    ``/sdapi/v1/txt2img`` gets its answer, so its connection closes at once)."""

    class StoppingServer(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            on_stop()

    return StoppingServer(config)


def serve(ctx: "AppContext", *, on_ready: Callable[[], None] | None = None) -> None:
    """Run uvicorn until interrupted; queue the start-up model load once it listens."""
    import time

    import uvicorn

    app = create_http_app(ctx)
    config = uvicorn.Config(app, host=ctx.flags.host, port=ctx.flags.effective_port, log_level="warning",
                            timeout_graceful_shutdown=5)
    server = _stopping_server(uvicorn, config, on_stop=ctx.queue.begin_shutdown)

    def when_listening() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.05)
        if server.started:
            load_model_at_start(ctx)
            if ctx.hashing is not None:
                ctx.hashing.start()  # every model file's hashes, in the background (modules/models/hash_worker)
            if on_ready is not None:
                on_ready()

    threading.Thread(target=when_listening, name="atelier-startup", daemon=True).start()
    server.run()
