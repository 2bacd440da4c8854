"""Run a real Atelier server (uvicorn in a thread, on a free localhost port) for tests."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

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
    root: Path | None = None  # set by StudioFactory: the folder holding data/ (and Stable-diffusion/)
    checkpoints: list[Path] = field(default_factory=list)  # StudioFactory: the models placed in the ckpt dir

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


Prepare = Callable[[Path, Path], None]


class StudioFactory:
    """Start studios on tiny models (the ``studio_factory`` fixture in tests/conftest.py).

    ``factory(argv, with_ui=..., models=("sd1",), load=True)`` makes ``<root>/data`` (``--data-dir``), puts each
    model in the checkpoint folder (``"sd1"`` and the other family keys: a tiny random-weight checkpoint built once
    per session; a ``Path``: that file or folder, copied), calls ``prepare(data_dir, ckpt_dir)`` to add files before
    the start, starts the server with ``--skip-load-model-at-start`` and loads the first model (``load=False``: none;
    a path: that one). The checkpoint folder is ``<data>/models/Stable-diffusion``, or ``<root>/Stable-diffusion``
    passed as ``--ckpt-dir`` with ``own_ckpt_dir=True``. Every server started stays up until :meth:`close`.
    """

    def __init__(self, mktemp: Callable[[str], Path], tiny: Callable[..., Path]) -> None:
        self._mktemp = mktemp
        self._tiny = tiny
        self._stack = ExitStack()

    def __call__(self, argv: Sequence[str] = ("--nowebui",), *, with_ui: bool | None = None,
                 models: Sequence[str | Path] = ("sd1",), load: bool | str | Path = True, name: str = "studio",
                 own_ckpt_dir: bool = False, prepare: Prepare | None = None) -> RunningServer:
        root = self._mktemp(name)
        data = root / "data"
        ckpt_dir = root / "Stable-diffusion" if own_ckpt_dir else data / "models" / "Stable-diffusion"
        ckpt_dir.mkdir(parents=True)
        placed = [self._place(model, ckpt_dir) for model in models]
        if prepare is not None:
            prepare(data, ckpt_dir)
        flags = [*argv, "--data-dir", str(data), "--skip-load-model-at-start"]
        if own_ckpt_dir:
            flags += ["--ckpt-dir", str(ckpt_dir)]
        srv = self._stack.enter_context(running_server(flags, with_ui=with_ui))
        srv.root, srv.checkpoints = root, placed
        if load is True and placed:
            load_and_wait(srv.ctx, str(placed[0]))
        elif load not in (True, False):
            load_and_wait(srv.ctx, str(load))
        return srv

    def _place(self, model: str | Path, ckpt_dir: Path) -> Path:
        src = self._tiny(model) if isinstance(model, str) else Path(model)
        dest = ckpt_dir / src.name
        if src.is_dir():
            shutil.copytree(src, dest)
        else:
            shutil.copyfile(src, dest)
        return dest

    def close(self) -> None:
        self._stack.close()
