"""Run a real Atelier server (uvicorn in a thread, on a free localhost port) for tests."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import httpx
import uvicorn

from modules.app_context import AppContext, create_app_context
from modules.flags import parse_flags
from modules.server import create_http_app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RunningServer:
    ctx: AppContext
    port: int
    base_url: str

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=120, **kwargs)


@contextmanager
def running_server(argv: Sequence[str], *, with_ui: bool | None = None) -> Iterator[RunningServer]:
    port = free_port()
    flags = parse_flags([*argv, "--port", str(port)])
    ctx = create_app_context(flags)
    app = create_http_app(ctx, with_ui=with_ui)
    # Gradio clients keep streams open (heartbeat, SSE): without a grace limit every shutdown waits out join(10)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        if time.time() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    try:
        yield RunningServer(ctx=ctx, port=port, base_url=f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(10)
        ctx.close()


def load_and_wait(ctx: AppContext, reference: str, timeout: float = 120) -> None:
    from modules.models.load_job import switch_model
    from modules.jobs.queue import JobState

    job = switch_model(ctx, reference)
    ctx.queue.wait(job.id, timeout)
    if job.state is not JobState.SUCCEEDED:
        raise RuntimeError(f"model load failed: {job.error}")
