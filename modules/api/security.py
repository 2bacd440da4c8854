"""API credentials (``--api-auth`` users, ``--api-key`` keys) enforced for every non-UI route.

Auth is an app-level ASGI middleware, not a per-route dependency, so a route added later (by
an extension, by another router) is covered without anyone remembering to add it: every
request is checked unless it is handled by the Gradio UI mount (which has its own login,
``--gradio-auth``). The API prefixes (``/sdapi/``, ``/api/``, ``/internal/``, the docs and the
OpenAPI document) always need credentials, whatever is mounted.

Who is asking (the *principal*) is put in the ASGI scope: ``user:<name>`` for a basic-auth user,
``key:<first 12 hex of sha256(key)>`` for an API key (the key itself is never stored), None when
no credentials are configured. The job queue uses it as the job owner (fairness, visibility).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Callable

from fastapi import Request
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from modules.api.errors import error_body

PRINCIPAL_KEY = "atelier.principal"
API_PREFIXES = ("/sdapi/", "/api/", "/v1/", "/internal/", "/docs", "/redoc", "/openapi.json")


def key_principal(key: str) -> str:
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class ApiCredentials:
    users: tuple[tuple[str, str], ...] = ()
    keys: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.users or self.keys)

    def check(self, headers: dict[str, str]) -> tuple[str | None, str]:
        """(principal, "") when the headers carry valid credentials, else (None, why not)."""
        authorization = headers.get("authorization", "")
        scheme, _, value = authorization.partition(" ")
        scheme = scheme.lower()
        key = headers.get("x-api-key") or (value.strip() if scheme == "bearer" else "")
        if key:
            return self._check_key(key)
        if scheme == "basic" and value:
            return self._check_basic(value.strip())
        return None, "authentication required: " + self.how()

    def how(self) -> str:
        ways = []
        if self.users:
            ways.append("HTTP Basic credentials (--api-auth)")
        if self.keys:
            ways.append("an API key as 'Authorization: Bearer KEY' or 'X-API-Key: KEY'")
        return " or ".join(ways)

    def _check_key(self, key: str) -> tuple[str | None, str]:
        ok = False
        for expected in self.keys:  # compare with every key: the time taken does not depend on which matched
            ok |= secrets.compare_digest(key.encode(), expected.encode())
        return (key_principal(key), "") if ok else (None, "Invalid API key")

    def _check_basic(self, token: str) -> tuple[str | None, str]:
        try:
            user, sep, password = base64.b64decode(token, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None, "Malformed HTTP Basic credentials"
        found = None
        for expected_user, expected_password in self.users:
            user_ok = secrets.compare_digest(user.encode(), expected_user.encode())
            pass_ok = secrets.compare_digest(password.encode(), expected_password.encode())
            if user_ok and pass_ok and sep:
                found = expected_user
        return (f"user:{found}", "") if found is not None else (None, "Incorrect username or password")


def principal_of(request: Request) -> str | None:
    """FastAPI dependency: who is asking (None when the API needs no credentials)."""
    return request.scope.get(PRINCIPAL_KEY)


def ui_route_matcher(routes: Callable[[], list[BaseRoute]], with_ui: bool) -> Callable[[Scope], bool]:
    """A test of whether a request will be served by the Gradio UI: the UI is the router's
    fallback, so a request is the UI's when no registered route matches it (whatever its method)
    and its path is not under an API prefix."""

    def is_ui(scope: Scope) -> bool:
        if not with_ui or scope.get("path", "").startswith(API_PREFIXES):
            return False
        return all(route.matches(scope)[0] is Match.NONE for route in routes())

    return is_ui


class AuthMiddleware:
    """Refuse every non-UI request without valid API credentials (401, JSON)."""

    def __init__(self, app: ASGIApp, credentials: ApiCredentials, is_ui: Callable[[Scope], bool]) -> None:
        self.app = app
        self.credentials = credentials
        self.is_ui = is_ui

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        scope[PRINCIPAL_KEY] = None
        if not self.credentials.enabled or self.is_ui(scope):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        principal, why = self.credentials.check(headers)
        if principal is None:
            await self._refuse(scope, send, why)
            return
        scope[PRINCIPAL_KEY] = principal
        await self.app(scope, receive, send)

    async def _refuse(self, scope: Scope, send: Send, why: str) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": why[:120]})
            return
        challenges = []
        if self.credentials.users:
            challenges.append('Basic realm="Atelier API"')
        if self.credentials.keys:
            challenges.append('Bearer realm="Atelier API"')
        body = json.dumps(error_body("Unauthorized", why)).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        headers += [(b"www-authenticate", c.encode()) for c in challenges]
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": body})
