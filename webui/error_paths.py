"""No absolute server path in an error the page shows.

Gradio shows the message of an exception raised while it prepares an input (a corrupt upload: PIL's
"cannot identify image file '/…/cache/gradio/…/x.png'") or runs a handler, as is. This ASGI wrapper
around the Gradio app rewrites the ``error`` strings of what Gradio sends back (server-sent events of
the queue and ``/call`` routes, JSON answers of ``/run``) with :meth:`modules.paths.Paths.scrub`, so a
path inside the data dir is shown relative to it and any other absolute path as its file name. Output
files (``path``/``url`` fields) are left alone: only values under an ``error`` key change.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

Scrub = Callable[[str], str]


def scrub_errors(value: Any, scrub: Scrub) -> Any:
    """``value`` (decoded JSON) with every string under an ``error`` key scrubbed, at any depth."""
    if isinstance(value, dict):
        return {k: (scrub(v) if k == "error" and isinstance(v, str) else scrub_errors(v, scrub))
                for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_errors(v, scrub) for v in value]
    return value


def _scrub_json(raw: bytes, scrub: Scrub) -> bytes:
    try:
        value = json.loads(raw)
    except ValueError:
        return raw
    cleaned = scrub_errors(value, scrub)
    return raw if cleaned == value else json.dumps(cleaned).encode()


def _scrub_sse_line(line: bytes, scrub: Scrub, in_error_event: bool) -> bytes:
    if not line.startswith(b"data: "):
        return line
    payload = line[len(b"data: "):]
    if in_error_event:  # /call's "event: error" carries the message itself as a JSON string (or object)
        try:
            value = json.loads(payload)
        except ValueError:
            return line
        if isinstance(value, str):
            return b"data: " + json.dumps(scrub(value)).encode()
    return b"data: " + _scrub_json(payload, scrub)


class ErrorPathScrubber:
    """Wrap the Gradio ASGI app so the error messages it sends name no absolute server path."""

    def __init__(self, app: ASGIApp, scrub: Scrub) -> None:
        self.app = app
        self.scrub = scrub

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = {"kind": None, "start": None, "body": b"", "pending": b"", "error_event": False}

        async def wrapped_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = dict((k.lower(), v) for k, v in message.get("headers", []))
                content_type = headers.get(b"content-type", b"")
                if content_type.startswith(b"text/event-stream"):
                    state["kind"] = "sse"
                elif content_type.startswith(b"application/json"):
                    state["kind"], state["start"] = "json", message  # held until the whole body is in
                    return
                await send(message)
                return
            if message["type"] != "http.response.body" or state["kind"] is None:
                await send(message)
                return
            if state["kind"] == "json":
                state["body"] += message.get("body", b"")
                if message.get("more_body", False):
                    return
                body = _scrub_json(state["body"], self.scrub)
                start = state["start"]
                headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
                headers.append((b"content-length", str(len(body)).encode()))
                await send({**start, "headers": headers})
                await send({"type": "http.response.body", "body": body, "more_body": False})
                return
            await send({**message, "body": self._sse(state, message.get("body", b""),
                                                      final=not message.get("more_body", False))})

        await self.app(scope, receive, wrapped_send)

    def _sse(self, state: dict[str, Any], chunk: bytes, *, final: bool) -> bytes:
        """Scrub complete lines of an event stream; a partial last line waits for the next chunk."""
        data = state["pending"] + chunk
        lines = data.split(b"\n")
        state["pending"] = b"" if final else lines.pop()
        out = []
        for line in lines:
            if line.startswith(b"event: "):
                state["error_event"] = line.strip() == b"event: error"
            out.append(_scrub_sse_line(line, self.scrub, state["error_event"]))
            if not line:
                state["error_event"] = False
        return b"\n".join(out) + (b"\n" if lines and not final else b"")
