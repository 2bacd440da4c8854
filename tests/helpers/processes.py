"""A real studio in a subprocess (``launch.py``), for the tests that kill, stop or restart it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

import httpx

REPO = Path(__file__).resolve().parents[2]


def start_launch(args: Sequence[str], log: Path) -> subprocess.Popen:
    """``launch.py ARGS`` with its output appended to ``log`` (one thread: tiny models gain nothing from two)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "launch.py", *args], cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                env=env)


def wait_up(http: httpx.Client, proc: subprocess.Popen, log: Path, timeout: float = 120, poll: float = 0.2) -> None:
    """Until ``/internal/ping`` answers; fails with the log's tail when the process exits or never answers."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, f"server exited:\n{log.read_text()[-3000:]}"
        try:
            if http.get("/internal/ping").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(poll)
    raise AssertionError(f"server did not start:\n{log.read_text()[-3000:]}")
