"""A clean stop (issue 33, point 5): a real ``launch.py --nowebui`` running a long job gets SIGTERM or
SIGINT (Ctrl-C). It exits with 0 within a few seconds; the running job is recorded as interrupted (a
resumable one goes back to the queue and runs again at the next start); callers blocked on
``/sdapi/v1/txt2img`` get an answer; and the job file is checkpointed and closed: no ``-wal`` content,
and it opens cleanly."""

from __future__ import annotations

import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from modules.jobs.model import SHUTDOWN_REASON, STOPPED_BEFORE_START
from tests.helpers.processes import start_launch, wait_up
from tests.helpers.server import free_port

PROMPT = {"prompt": "a shape", "width": 64, "height": 64}
LONG = {**PROMPT, "steps": 150, "n_iter": 40, "seed": 7}
PROMPT_EXIT_SECONDS = 8.0


def _start(data: Path, ckpt: Path, port: int, log: Path) -> subprocess.Popen:
    """``launch.py --nowebui`` with the tiny checkpoint ``ckpt`` loaded at start (quick on 2 CPUs)."""
    return start_launch(["--nowebui", "--data-dir", str(data), "--ckpt-dir", str(ckpt.parent), "--ckpt",
                         str(ckpt), "--port", str(port), "--min-free-space-mb", "1"], log)


def _wait_up(http: httpx.Client, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    wait_up(http, proc, log, timeout, poll=0.2)


def _wait_for(check, what: str, timeout: float = 120) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _stop(proc: subprocess.Popen, sig: signal.Signals, log: Path) -> float:
    """Send ``sig``; return how long the process took to exit (asserting it exited with 0)."""
    sent = time.monotonic()
    proc.send_signal(sig)
    try:
        code = proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"no exit 30 s after {sig.name}:\n{log.read_text()[-3000:]}") from None
    took = time.monotonic() - sent
    assert code == 0, f"exit code {code} after {sig.name}:\n{log.read_text()[-3000:]}"
    return took


def _rows(db: Path) -> dict[str, dict[str, Any]]:
    """The job file after the stop: no write-ahead log left over, intact, every job by id."""
    wal = db.with_name(db.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0, f"{wal} holds {wal.stat().st_size} bytes"
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = {r["id"]: dict(r) for r in conn.execute("SELECT * FROM jobs ORDER BY seq")}
    return rows


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(30)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory, tiny_model) -> Path:
    return Path(shutil.copy(tiny_model("sd1"), tmp_path_factory.mktemp("ckpt")))


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sigterm_requeues_the_resumable_job_and_the_next_start_runs_it(tmp_path: Path, ckpt: Path) -> None:
    data, log, port = tmp_path / "data", tmp_path / "server.log", free_port()
    proc = _start(data, ckpt, port, log)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            _wait_up(http, proc, log)
            submitted = [http.post("/api/v1/jobs", json={"kind": "txt2img", "request": body})
                         for body in (LONG, {**PROMPT, "steps": 2})]
            assert all(r.status_code == 201 for r in submitted), [r.text for r in submitted]
            running, waiting = (r.json()["id"] for r in submitted)
            _wait_for(lambda: http.get(f"/api/v1/jobs/{running}").json()["step"] > 0, "the long job to run")
            took = _stop(proc, signal.SIGTERM, log)
        assert took < PROMPT_EXIT_SECONDS, f"took {took:.1f} s to stop"
        rows = _rows(data / "jobs.sqlite3")
        # native API jobs save every image, so they resume: both are queued again, neither failed
        assert rows[running]["state"] == "queued" and rows[running]["error"] is None
        assert rows[waiting]["state"] == "queued"
        assert "SIGTERM: stopping cleanly" in log.read_text()

        proc = _start(data, ckpt, port, log)  # the next start runs them again
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            _wait_up(http, proc, log)
            _wait_for(lambda: http.get(f"/api/v1/jobs/{running}").json()["step"] > 0, "the requeued job to run")
            assert http.post(f"/api/v1/jobs/{running}/cancel").json()["cancelled"]
            waited = _wait_for(lambda: (s := http.get(f"/api/v1/jobs/{waiting}").json())["state"] in
                               ("succeeded", "failed") and s, "the waiting job")
            assert waited["state"] == "succeeded", waited
            _stop(proc, signal.SIGTERM, log)
        rows = _rows(data / "jobs.sqlite3")
        assert rows[running]["state"] == "cancelled" and rows[waiting]["state"] == "succeeded"
    finally:
        _kill(proc)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_ctrl_c_fails_the_running_job_releases_blocked_callers_and_exits_0(tmp_path: Path, ckpt: Path) -> None:
    data, log, port = tmp_path / "data", tmp_path / "server.log", free_port()
    proc = _start(data, ckpt, port, log)
    answers: dict[int, Any] = {}

    def blocking_call(index: int, body: dict[str, Any]) -> None:
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
                answers[index] = client.post("/sdapi/v1/txt2img", json=body)
        except httpx.TransportError as exc:  # the server went away without answering
            answers[index] = exc

    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            _wait_up(http, proc, log)
            callers = [threading.Thread(target=blocking_call, args=(index, body), daemon=True)
                       for index, body in enumerate((LONG, {**PROMPT, "steps": 2}))]
            callers[0].start()
            _wait_for(lambda: http.get("/sdapi/v1/progress").json()["state"]["sampling_step"] > 0,
                      "the sdapi job to run")
            callers[1].start()
            _wait_for(lambda: http.get("/api/v1/queue").json()["waiting"] == 1, "the second sdapi job to queue")
            took = _stop(proc, signal.SIGINT, log)
        assert took < PROMPT_EXIT_SECONDS, f"took {took:.1f} s to stop"
        for caller in callers:
            caller.join(10)
            assert not caller.is_alive(), "a blocked /sdapi/v1/txt2img caller was never answered"
        # both callers are answered before the server goes: the running job failed, the waiting one never ran
        assert isinstance(answers[0], httpx.Response) and isinstance(answers[1], httpx.Response), answers
        assert answers[0].status_code == 500 and answers[0].json()["detail"] == SHUTDOWN_REASON
        assert answers[1].status_code == 409 and answers[1].json()["detail"] == STOPPED_BEFORE_START
        rows = list(_rows(data / "jobs.sqlite3").values())
        sdapi = [r for r in rows if r["source"] == "sdapi"]
        assert len(sdapi) == 2
        # sdapi jobs without save_images cannot resume: the running one failed, the waiting one was cancelled
        assert (sdapi[0]["state"], sdapi[0]["error"]) == ("failed", SHUTDOWN_REASON)
        assert (sdapi[1]["state"], sdapi[1]["error"]) == ("cancelled", STOPPED_BEFORE_START)
        assert "SIGINT: stopping cleanly" in log.read_text() and "Traceback" not in log.read_text()
    finally:
        _kill(proc)
