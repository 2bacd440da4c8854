"""A small OpenAI-compatible server for the understanding tests, in a thread (http.server).

The first path segment picks a behaviour: ``/ok/v1``, ``/slow/v1``, ``/ratelimit/v1`` (429 with
Retry-After once, then ok), ``/fail500/v1``, ``/badjson/v1``, ``/cut/v1`` (a stream cut mid-way),
``/echo/v1`` (a 400 whose message repeats the Authorization header), ``/unauth/v1`` (401). Every request
is recorded (path, headers, body).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeOpenAI:
    def __init__(self, answer: str = "a red circle", slow_s: float = 2.0) -> None:
        self.answer = answer
        self.slow_s = slow_s
        self.requests: list[dict[str, Any]] = []
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                owner._record(self, None)
                self._json(200, {"object": "list", "data": [{"id": "fake-vlm", "object": "model"}]})

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                scenario = owner._record(self, body)
                count = owner.counts[scenario]
                if scenario == "slow":
                    time.sleep(owner.slow_s)
                if scenario == "ratelimit" and count == 1:
                    return self._json(429, {"error": {"message": "slow down"}}, {"Retry-After": "1"})
                if scenario == "fail500":
                    return self._json(500, {"error": {"message": "upstream exploded"}})
                if scenario == "unauth":
                    return self._json(401, {"error": {"message": "bad key"}})
                if scenario == "echo":
                    return self._json(400, {"error": {"message": "bad request from " + self.headers.get(
                        "authorization", "")}})
                if scenario == "badjson":
                    data = b"<html>gateway</html>"
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                if body.get("stream"):
                    return self._stream(body, cut=scenario == "cut")
                self._json(200, {"id": "c1", "object": "chat.completion", "model": body.get("model"),
                                 "choices": [{"index": 0, "message": {"role": "assistant", "content": owner.answer},
                                              "finish_reason": "stop"}],
                                 "usage": {"prompt_tokens": 17, "completion_tokens": 4, "total_tokens": 21}})

            def _json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
                raw = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(raw)

            def _stream(self, body: dict[str, Any], cut: bool) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("connection", "close")
                self.end_headers()
                self.wfile.write(b": PROCESSING\n\n")
                words = owner.answer.split(" ")
                for i, word in enumerate(words):
                    if cut and i == 2:
                        self.wfile.flush()
                        self.close_connection = True
                        return
                    piece = word if i == 0 else " " + word
                    chunk = {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
                             "model": body.get("model")}
                    self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
                    self.wfile.flush()
                final = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
                self.wfile.write(b"data: " + json.dumps(final).encode() + b"\n\n")
                usage = {"choices": [], "usage": {"prompt_tokens": 17, "completion_tokens": len(words)}}
                self.wfile.write(b"data: " + json.dumps(usage).encode() + b"\n\n")
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
                self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _record(self, handler: BaseHTTPRequestHandler, body: Any) -> str:
        scenario = handler.path.strip("/").split("/")[0]
        with self._lock:
            self.counts[scenario] = self.counts.get(scenario, 0) + 1
            self.requests.append({"path": handler.path, "headers": dict(handler.headers), "body": body})
        return scenario

    def url(self, scenario: str) -> str:
        return f"http://127.0.0.1:{self.port}/{scenario}/v1"

    def __enter__(self) -> "FakeOpenAI":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
