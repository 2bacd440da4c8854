"""A second, Gradio-independent lock on the UI's file inputs: event requests that name a file outside
Gradio's upload cache, or a URL, are refused before Gradio sees them.

:mod:`webui.mount` makes Gradio apply its own check (input files must come from the upload cache).
That check lives inside Gradio and skips URLs, which Gradio would download on the client's behalf.
This ASGI wrapper around the UI reads each JSON request body sent to the UI (the events' routes:
``/gradio_api/queue/join``, ``/call/…``, ``/run/…``, and any a later Gradio adds), finds every file
object in it (a dict with a string ``path`` and Gradio's ``meta`` or a FileData field) and answers
403 when one points anywhere but into the cache: what a client uploaded, or what the studio handed
out to it (results and gallery items are copied there when shown).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_FILE_FIELDS = ("meta", "orig_name", "mime_type", "is_stream", "url")
_URL_PREFIXES = ("http://", "https://", "ftp://", "file:", "data:", "//")


def file_paths(value: Any) -> Iterator[str]:
    """The ``path`` of every file object in a decoded JSON value, at any depth."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            path = item.get("path")
            if isinstance(path, str) and any(field in item for field in _FILE_FIELDS):
                yield path
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def refusal(path: str, cache: Path) -> str | None:
    """Why an input file path is refused (None when it lies inside the upload cache)."""
    if path.lower().startswith(_URL_PREFIXES) or "://" in path:
        return "a file input takes an uploaded file, not a URL"
    real = os.path.realpath(path)
    root = os.path.realpath(cache)
    if real != root and real.startswith(root + os.sep):
        return None
    return "a file input takes only files uploaded to this studio or images it showed you"


class InputFileGuard:
    """Wrap the Gradio ASGI app: refuse (403) a JSON request naming a file outside ``cache``."""

    def __init__(self, app: ASGIApp, cache: Path, max_bytes: int) -> None:
        self.app = app
        self.cache = cache
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        body, messages = b"", []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            if not message.get("more_body", False) or len(body) > self.max_bytes:
                break
        why = self._check(body)
        if why is not None:
            await _refuse(send, why)
            return
        replay = iter(messages)

        async def replayed() -> Message:
            try:
                return next(replay)
            except StopIteration:
                return await receive()

        await self.app(scope, replayed, send)

    def _check(self, body: bytes) -> str | None:
        try:
            value = json.loads(body)
        except ValueError:
            return None  # not JSON after all: Gradio answers it as it would
        for path in file_paths(value):
            why = refusal(path, self.cache)
            if why is not None:
                return why
        return None


def _is_json(scope: Scope) -> bool:
    """Whether the body may be read as JSON by the route: any POST but a form or file upload (FastAPI
    also reads a body without a content type as JSON)."""
    for key, value in scope.get("headers", []):
        if key.lower() == b"content-type":
            kind = value.split(b";")[0].strip().lower()
            return kind not in (b"multipart/form-data", b"application/x-www-form-urlencoded")
    return True


async def _refuse(send: Send, why: str) -> None:
    body = json.dumps({"error": why, "detail": why}).encode()
    await send({"type": "http.response.start", "status": 403,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
