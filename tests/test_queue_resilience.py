"""The queue's worker never dies (issue 33, point 3).

Injected failures around a job and its bookkeeping (the handler, the job store's writes, describing
the result, events, an exception that escapes the worker loop) leave the worker running, release every
waiter and retry what was not recorded. A full disk refuses submits with a DiskFullError naming the
folder and the space needed, holds waiting jobs back until space is free again, and a job that fails
for lack of space says so. The last test fills a real (tmpfs) disk under a real server.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Literal

import httpx
import pytest
from pydantic import BaseModel

from modules.jobs.disk_space import MB, SpaceGuard, free_bytes, is_disk_full
from modules.jobs.events import EventBus
from modules.jobs.model import DiskFullError, Job, JobState
from modules.jobs.progress import JobControl
from modules.jobs.queue import MAX_CRASHES_IN_A_ROW, JobQueue
from modules.jobs.recording import RETRY_DELAYS, JobRecorder
from modules.jobs.store import JobStore

DISK_FULL = "database or disk is full"


class Work(BaseModel):
    kind: Literal["work"] = "work"
    steps: int = 1
    label: str = ""
    raise_: str = ""   # "crash": BaseException out of the handler; "enospc": a failed image write


class WorkerCrash(BaseException):
    """Escapes ``except Exception``: stands for whatever could end the worker loop."""


def _handler(ran: list[str]) -> Callable[[Job, JobControl], dict]:
    def run(job: Job, control: JobControl) -> dict:
        req = job.request
        if req.raise_ == "crash":
            raise WorkerCrash(f"crash in {req.label}")
        if req.raise_ == "enospc":
            raise OSError(errno.ENOSPC, "No space left on device")
        control.begin(1, req.steps)
        for step in range(req.steps):
            if control.should_stop:
                break
            time.sleep(0.01)
            control.step(step + 1)
        ran.append(req.label)
        return {"label": req.label}
    return run


class FlakyStore(JobStore):
    """A real store whose writes fail (as a full disk makes them fail) while ``failing`` says so."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.failing: set[str] = set()
        self.attempts: dict[str, int] = {}

    def _maybe_fail(self, what: str) -> None:
        self.attempts[what] = self.attempts.get(what, 0) + 1
        if what in self.failing:
            raise sqlite3.OperationalError(DISK_FULL)

    def insert(self, job: Any) -> None:
        self._maybe_fail("insert")
        super().insert(job)

    def recover(self, reason: str = "") -> Any:
        self._maybe_fail("recover")
        return super().recover(reason)

    def mark_started(self, job_id: str, started_at: float) -> None:
        self._maybe_fail("mark_started")
        super().mark_started(job_id, started_at)

    def mark_finished(self, job_id: str, state: JobState, **kwargs: Any) -> None:
        self._maybe_fail("mark_finished")
        super().mark_finished(job_id, state, **kwargs)


class FakeDisk:
    """Free space the test sets (bytes), measured by the guard instead of the real disk."""

    def __init__(self, free: int = 10_000 * MB) -> None:
        self.free = free

    def __call__(self, path: Path) -> int:
        return self.free


@pytest.fixture()
def parts(tmp_path: Path):
    store = FlakyStore(tmp_path / "jobs.sqlite3")
    disk = FakeDisk()
    guard = SpaceGuard(data_dir=tmp_path, folders=(tmp_path / "outputs", tmp_path), min_free_mb=lambda: 64,
                       measure=disk)
    ran: list[str] = []
    queue = JobQueue({"work": _handler(ran)}, store=store, request_types={"work": Work},
                     describe=lambda kind, result: {"label": result["label"]}, space=guard)
    queue.start()
    yield queue, store, disk, ran
    queue.shutdown()
    store.close()


def _wait_until(check: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.time() + timeout
    while not check():
        assert time.time() < deadline, "timed out"
        time.sleep(0.01)


def test_store_write_failures_are_retried_and_never_stop_the_worker(parts) -> None:
    queue, store, _, ran = parts
    store.failing = {"mark_started", "mark_finished"}
    first = queue.submit(Work(label="first"))
    assert queue.wait(first.id, timeout=15).done.is_set()  # the waiter is released without the record
    assert first.state is JobState.SUCCEEDED and first.result == {"label": "first"}
    # retried with backoff (1 + len(RETRY_DELAYS) tries per write), the outcome kept behind the start
    assert store.attempts["mark_started"] >= 1 + len(RETRY_DELAYS) and "mark_finished" not in store.attempts
    assert store.get(first.id).state is JobState.QUEUED  # nothing landed yet
    assert queue.worker_status().alive and queue.worker_status().unrecorded == 2
    store.failing = set()                                  # space is back
    second = queue.submit(Work(label="second"))
    queue.wait(second.id, timeout=15)
    assert second.state is JobState.SUCCEEDED and ran == ["first", "second"]
    _wait_until(lambda: queue.worker_status().unrecorded == 0)
    recorded = store.get(first.id)  # the kept writes landed, in order: started, then the outcome
    assert recorded.state is JobState.SUCCEEDED and recorded.started_at is not None
    assert recorded.result_meta == {"label": "first"}
    assert store.get(second.id).state is JobState.SUCCEEDED


def test_an_outcome_that_cannot_be_recorded_still_releases_the_waiter(parts) -> None:
    queue, store, _, _ = parts
    store.failing = {"mark_finished"}
    job = queue.submit(Work(label="unrecorded"))
    assert queue.wait(job.id, timeout=15).state is JobState.SUCCEEDED
    assert store.attempts["mark_finished"] >= 1 + len(RETRY_DELAYS)
    stored = store.get(job.id)
    assert stored.state is JobState.RUNNING and queue.lookup(job.id).state is JobState.SUCCEEDED
    store.failing = set()
    _wait_until(lambda: store.get(job.id).state is JobState.SUCCEEDED, timeout=10)  # the worker's flush, when idle


def test_a_failing_describer_and_event_subscriber_do_not_fail_the_job(tmp_path: Path) -> None:
    broken = {"n": 0}

    class BrokenBus(EventBus):
        def publish(self, type_: str, job_id: str, owner: str | None, **data: Any):  # type: ignore[override]
            broken["n"] += 1
            raise RuntimeError("event bus broken")

    ran: list[str] = []

    def describe(kind: str, result: Any) -> dict:
        raise ValueError("cannot describe")

    queue = JobQueue({"work": _handler(ran)}, store=JobStore(tmp_path / "jobs.sqlite3"), events=BrokenBus(),
                     describe=describe)
    queue.start()
    try:
        jobs = [queue.submit(Work(label=str(i), steps=3)) for i in range(2)]
        for job in jobs:
            queue.wait(job.id, timeout=10)
        assert [j.state for j in jobs] == [JobState.SUCCEEDED] * 2 and ran == ["0", "1"]
        assert broken["n"] >= 6 and queue.worker_status().alive
    finally:
        queue.shutdown()


def test_an_exception_escaping_the_worker_loop_restarts_it(parts, caplog: pytest.LogCaptureFixture) -> None:
    queue, store, _, ran = parts
    caplog.set_level(logging.ERROR, logger="modules.jobs.queue")
    crash = queue.submit(Work(label="boom", raise_="crash"))
    after = queue.submit(Work(label="after"))
    assert queue.wait(crash.id, timeout=10).state is JobState.FAILED
    assert "the job worker crashed" in crash.error and "crash in boom" in crash.error
    assert queue.wait(after.id, timeout=10).state is JobState.SUCCEEDED and ran == ["after"]
    status = queue.worker_status()
    assert status.alive and status.restarts == 1 and "crash in boom" in status.error
    assert any("restarting it" in r.getMessage() for r in caplog.records)
    _wait_until(lambda: store.get(crash.id).state is JobState.FAILED)


def test_a_worker_that_stopped_is_reported_and_started_again_on_submit(parts, caplog) -> None:
    queue, _, _, ran = parts
    caplog.set_level(logging.ERROR, logger="modules.jobs.queue")
    crashes = [queue.submit(Work(label=f"c{i}", raise_="crash")) for i in range(MAX_CRASHES_IN_A_ROW)]
    for job in crashes:
        assert queue.wait(job.id, timeout=20).state is JobState.FAILED
    _wait_until(lambda: not queue.worker_status().alive)
    status = queue.worker_status()
    assert "crashes in a row" in status.error and "not running" in status.describe()
    job = queue.submit(Work(label="revived"))  # the liveness check starts the worker again
    assert queue.wait(job.id, timeout=10).state is JobState.SUCCEEDED and ran == ["revived"]
    assert queue.worker_status().alive
    assert any("had stopped" in r.getMessage() and "starting it again" in r.getMessage() for r in caplog.records)


def test_full_disk_refuses_submits_holds_jobs_and_explains_failures(parts) -> None:
    queue, store, disk, ran = parts
    failed = queue.submit(Work(label="no room", raise_="enospc"))
    queue.wait(failed.id, timeout=10)
    assert failed.state is JobState.FAILED and failed.out_of_space
    assert failed.error == "no space left on the device holding outputs: free 10000 MB, need 64 MB"
    _wait_until(lambda: store.get(failed.id).error == failed.error)

    blocker = queue.submit(Work(label="blocker", steps=40))
    _wait_until(lambda: queue.current() is not None)
    waiting = queue.submit(Work(label="waiting"))
    disk.free = 3 * MB  # the disk fills while a job runs
    with pytest.raises(DiskFullError, match=r"^no space left on the device holding outputs: free 3 MB, need 64 MB"):
        queue.submit(Work(label="refused"))
    queue.wait(blocker.id, timeout=10)
    time.sleep(0.3)
    assert waiting.state is JobState.QUEUED and "free 3 MB" in queue.worker_status().paused
    assert "jobs are waiting: no space left" in queue.worker_status().describe()
    disk.free = 10_000 * MB  # space is freed: the held-back job runs, new submits are taken
    late = queue.submit(Work(label="late"))
    for job in (waiting, late):
        assert queue.wait(job.id, timeout=10).state is JobState.SUCCEEDED
    assert ran == ["blocker", "waiting", "late"] and queue.worker_status().paused is None


def test_the_store_refusing_a_submit_for_space_is_a_disk_full_error(parts) -> None:
    queue, store, _, _ = parts
    store.failing = {"insert"}
    with pytest.raises(DiskFullError, match=r"^no space left on the device holding the data dir: free \d+ MB"):
        queue.submit(Work(label="x"))
    assert queue.waiting_count() == 0 and queue.current() is None


def test_a_full_disk_at_start_up_does_not_stop_the_queue_from_starting(tmp_path: Path, caplog) -> None:
    store = FlakyStore(tmp_path / "jobs.sqlite3")
    store.failing = {"recover"}
    queue = JobQueue({"work": _handler([])}, store=store, request_types={"work": Work})
    assert queue.restore().resumed == 0
    assert any("could not restore the job queue" in r.getMessage() and "no space left" in r.getMessage()
               for r in caplog.records)
    store.close()


def test_is_disk_full_recognises_every_form() -> None:
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(sqlite3.OperationalError(DISK_FULL))
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("saving the image failed")  # raised during the ENOSPC: still a full disk
    except RuntimeError as chained:
        assert is_disk_full(chained)
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not is_disk_full(sqlite3.OperationalError("database is locked"))
    assert not is_disk_full(ValueError("disk"))


def test_space_guard_margin_folder_names_and_off_switch(tmp_path: Path) -> None:
    margin = {"mb": 64}
    disk = FakeDisk(free=10 * MB)
    guard = SpaceGuard(data_dir=tmp_path, folders=(tmp_path / "outputs" / "txt2img-images", tmp_path),
                       min_free_mb=lambda: margin["mb"], measure=disk)
    assert str(guard.shortfall()) == ("no space left on the device holding outputs/txt2img-images: "
                                      "free 10 MB, need 64 MB")
    margin["mb"] = 0  # the setting turned the check off; an actual failure is still explained
    assert guard.shortfall() is None
    explained = guard.explain(OSError(errno.ENOSPC, "full", str(tmp_path / "cache" / "hashes.json")))
    assert str(explained) == "no space left on the device holding cache: free 10 MB, need 1 MB"
    assert free_bytes(tmp_path / "not" / "yet" / "made") is not None  # measured on the nearest existing parent


def test_recorder_keeps_each_jobs_writes_in_order() -> None:
    class Store:
        def __init__(self) -> None:
            self.rows: list[tuple[str, str]] = []
            self.broken = True

    store = Store()

    def write(job: str, what: str):
        def run(s: Store) -> None:
            if s.broken:
                raise sqlite3.OperationalError(DISK_FULL)
            s.rows.append((job, what))
        return run

    recorder = JobRecorder(store, delays=(0.0,), sleep=lambda s: None)  # type: ignore[arg-type]
    assert not recorder.write("start", "a", write("a", "start"))
    assert not recorder.write("outcome", "a", write("a", "outcome"))
    assert recorder.pending == 2 and "disk is full" in recorder.last_error
    store.broken = False
    assert recorder.write("start", "b", write("b", "start"))  # lands, and so do a's, in their order
    assert store.rows == [("a", "start"), ("a", "outcome"), ("b", "start")] and recorder.pending == 0


# -- a real full disk under a real server --------------------------------------------------------------

def _mount_tmpfs(where: Path, size_mb: int) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs; the injected-error tests above cover the same paths")
    where.mkdir(parents=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")


def _fill(folder: Path) -> Path:
    """Write a file until the device is full; returns it (delete it to free the space)."""
    filler = folder / "filler.bin"
    chunk = b"\0" * (256 * 1024)
    with filler.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    for size in (16 * 1024, 1024, 64):  # the last partial pages
        try:
            with filler.open("ab", buffering=0) as out:
                while True:
                    out.write(b"\0" * size)
        except OSError:
            pass
    return filler


def _job(http: httpx.Client, job_id: str) -> dict[str, Any]:
    r = http.get(f"/api/v1/jobs/{job_id}")
    assert r.status_code == 200, r.text
    return r.json()


def _wait_state(http: httpx.Client, job_id: str, states: set[str], timeout: float = 120) -> dict[str, Any]:
    deadline = time.time() + timeout
    while True:
        status = _job(http, job_id)
        if status["state"] in states:
            return status
        assert time.time() < deadline, f"job {job_id} never reached {states}: {status}"
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_disk_that_fills_while_a_job_runs(tmp_path: Path, tiny_model) -> None:
    from tests.helpers.server import load_and_wait, running_server

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    tiny = shutil.copy(tiny_model("sd1"), ckpt)
    data = tmp_path / "data"
    _mount_tmpfs(data, 24)
    filler: Path | None = None
    try:
        with running_server(["--nowebui", "--data-dir", str(data), "--ckpt-dir", str(ckpt),
                             "--min-free-space-mb", "1"]) as srv, srv.client() as http:
            load_and_wait(srv.ctx, str(tiny))
            body = {"prompt": "a shape", "width": 64, "height": 64, "seed": 1}

            def submit(**extra: Any) -> httpx.Response:
                return http.post("/api/v1/jobs", json={"kind": "txt2img", "request": {**body, "steps": 2, **extra}})

            long = submit(steps=150, n_iter=40)
            assert long.status_code == 201, long.text
            running = long.json()["id"]
            waiting = submit().json()["id"]
            _wait_until(lambda: _job(http, running)["step"] > 0, timeout=60)
            filler = _fill(data)

            failed = _wait_state(http, running, {"failed", "succeeded"})
            assert failed["state"] == "failed", failed
            assert failed["error"].startswith("no space left on the device holding outputs: free 0 MB, need 1 MB")
            refused = submit()
            assert refused.status_code == 507, refused.text
            assert refused.json()["error"] == "InsufficientStorage"
            assert "no space left on the device holding" in refused.json()["detail"] and "need 1 MB" in refused.text
            blocking = http.post("/sdapi/v1/txt2img", json={**body, "steps": 2})  # refused at once, not hung
            assert blocking.status_code == 507, blocking.text
            _wait_until(lambda: http.get("/api/v1/queue").json()["jobs_held_back"] is not None)  # after its retries
            queue = http.get("/api/v1/queue").json()
            assert queue["worker_alive"] and "no space left" in queue["jobs_held_back"]
            assert queue["worker_error"].startswith("jobs are waiting: no space left")
            assert "no space left" in http.get("/sdapi/v1/progress").json()["textinfo"]
            assert _job(http, waiting)["state"] == "queued"

            filler.unlink()  # space is freed: the held-back job and a new one finish
            filler = None
            fresh = submit()
            assert fresh.status_code == 201, fresh.text
            for job_id in (waiting, fresh.json()["id"]):
                assert _wait_state(http, job_id, {"succeeded", "failed"})["state"] == "succeeded"
            _wait_until(lambda: srv.ctx.queue.worker_status().unrecorded == 0, timeout=30)
            assert srv.ctx.store.get(running).error == failed["error"]  # the failure was recorded too
            assert http.get("/api/v1/queue").json()["worker_error"] is None
    finally:
        if filler is not None:
            filler.unlink(missing_ok=True)
        subprocess.run(["umount", "-l", str(data)], check=False)


def test_the_flag_overrides_the_setting_and_bad_values_are_refused(tmp_path: Path) -> None:
    from modules.app_context import space_guard
    from modules.flags import FlagError, parse_flags
    from modules.paths import resolve_paths
    from modules.settings import SettingsError, SettingsStore

    paths = resolve_paths(tmp_path)
    settings = SettingsStore(paths.settings_file)
    assert space_guard(parse_flags([]), paths, settings).margin_mb() == 64  # the setting's default
    settings.update({"min_free_space_mb": 500})
    assert space_guard(parse_flags([]), paths, settings).margin_mb() == 500  # read at each check
    assert space_guard(parse_flags(["--min-free-space-mb", "0"]), paths, settings).margin_mb() == 0
    with pytest.raises(FlagError, match="--min-free-space-mb must be 0 or more"):
        parse_flags(["--min-free-space-mb", "-1"])
    with pytest.raises(SettingsError, match="min_free_space_mb"):
        settings.update({"min_free_space_mb": -5})
