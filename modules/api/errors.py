"""Error answers: every failure is JSON with a readable message, never a traceback.

The shape follows A1111 (``error``, ``detail``, ``errors``) so existing clients can show it.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An expected failure with an HTTP status and a user-facing message."""

    def __init__(self, status: int, message: str, kind: str = "BadRequest") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind


def error_body(kind: str, message: str) -> dict[str, str]:
    return {"error": kind, "detail": message, "errors": message}


class ErrorBody(BaseModel):
    """Every error answer: A1111's keys, with a readable message in ``detail``."""

    error: str = Field(..., description="kind of error, e.g. ValidationError, QueueFull, Unauthorized")
    detail: str = Field(..., description="what went wrong, for people")
    errors: str = Field(..., description="the same message (A1111 clients read this key)")


_ERROR_TEXT = {400: "Bad request", 401: "Missing or wrong credentials", 404: "Not found",
               409: "Conflict with the job's state", 413: "Too large (request body, image size or image count)",
               422: "Invalid request", 429: "Queue full", 500: "Internal error",
               507: "Insufficient storage: too little free disk space where jobs write"}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries documenting the JSON error answers."""
    return {code: {"model": ErrorBody, "description": _ERROR_TEXT.get(code, "Error")} for code in codes}


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        where = ".".join(loc) if loc else "request body"
        msg = err.get("msg", "invalid")
        if err.get("type") == "missing" and not loc:
            msg = "is missing: send a JSON object"
        elif err.get("type") in ("json_invalid", "model_attributes_type", "dict_type"):
            where, msg = "request body", "must be a JSON object"
        parts.append(f"{where}: {msg}")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(status_code=exc.status, content=error_body(exc.kind, exc.message))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content=error_body("ValidationError", _validation_message(exc)))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return JSONResponse(status_code=exc.status_code, content=error_body("HTTPException", detail),
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        from modules.jobs.disk_space import is_disk_full

        if is_disk_full(exc):  # a write refused for lack of space is the disk's state, not a bug: 507
            log.warning("%s %s: %s", request.method, request.url.path, exc)
            return JSONResponse(status_code=507, content=error_body(
                "InsufficientStorage", f"no space left on the device: {exc}; free some disk space and retry"))
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse(status_code=500, content=error_body(type(exc).__name__,
                                                                f"internal error: {exc}"))
