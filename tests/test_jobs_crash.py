"""Jobs survive a crash: a real server process is killed with SIGKILL while a job runs and others
wait; after a restart the waiting jobs complete, the running one is failed with its reason, and
every image finished before the crash is still there and served."""

from __future__ import annotations

import base64
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.processes import start_launch, wait_up
from tests.helpers.server import free_port

SIZE = 64


def _start(data: Path, ckpt: Path, port: int, log: Path) -> subprocess.Popen:
    return start_launch(["--nowebui", "--data-dir", str(data), "--ckpt-dir", str(ckpt), "--port", str(port)], log)


def _wait_up(http: httpx.Client, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    wait_up(http, proc, log, timeout, poll=0.2)


def _submit(http: httpx.Client, **request: Any) -> str:
    body = {"prompt": "a shape", "width": SIZE, "height": SIZE, "steps": 2, **request}
    r = http.post("/api/v1/jobs", json={"kind": "txt2img", "request": body})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _status(http: httpx.Client, job_id: str) -> dict[str, Any]:
    r = http.get(f"/api/v1/jobs/{job_id}")
    assert r.status_code == 200, r.text
    return r.json()


def _wait_state(http: httpx.Client, job_id: str, states: set[str], timeout: float = 120) -> dict[str, Any]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = _status(http, job_id)
        if status["state"] in states:
            return status
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} never reached {states}: {status}")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_queued_jobs_survive_kill_9(tmp_path: Path, tiny_model) -> None:
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    shutil.copy(tiny_model("sd1"), ckpt)
    data, log, port = tmp_path / "data", tmp_path / "server.log", free_port()
    proc = _start(data, ckpt, port, log)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            _wait_up(http, proc, log)
            finished = _submit(http, seed=100, batch_size=2)
            assert _wait_state(http, finished, {"succeeded", "failed"})["state"] == "succeeded"
            before = http.get(f"/api/v1/jobs/{finished}/result").json()["images"]
            running = _submit(http, steps=150, n_iter=40, seed=200)
            waiting = [_submit(http, seed=300 + i) for i in range(3)]
            deadline = time.time() + 60
            while _status(http, running)["step"] == 0:
                assert time.time() < deadline
                time.sleep(0.05)
            assert [_status(http, j)["state"] for j in waiting] == ["queued"] * 3
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)

        proc = _start(data, ckpt, port, log)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            _wait_up(http, proc, log)
            crashed = _status(http, running)
            assert crashed["state"] == "failed" and crashed["error"] == "interrupted by a restart/crash"
            for job in waiting:
                assert _wait_state(http, job, {"succeeded", "failed", "cancelled"})["state"] == "succeeded"
                images = http.get(f"/api/v1/jobs/{job}/result").json()["images"]
                assert len(images) == 1 and Path(images[0]["path"]).is_file() and images[0]["image"]
            after = http.get(f"/api/v1/jobs/{finished}/result").json()["images"]
            assert [a["path"] for a in after] == [b["path"] for b in before]
            for entry in after:
                assert base64.b64decode(entry["image"]) == Path(entry["path"]).read_bytes()
            listed = http.get("/api/v1/jobs", params={"limit": 100}).json()["jobs"]
            assert {j["id"] for j in listed} >= {finished, running, *waiting}
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
