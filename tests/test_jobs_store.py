"""The SQLite job store and the queue's restore: what survives a restart (without a server)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel

from modules.jobs.model import CRASH_REASON, Job, JobState
from modules.jobs.progress import JobControl
from modules.jobs.queue import NOT_RESUMED, JobQueue
from modules.jobs.store import JobStore, open_job_store


class Work(BaseModel):
    kind: Literal["work"] = "work"
    steps: int = 1
    save_images: bool = True
    label: str = ""


def _handler(log: list[str]):
    def run(job: Job, control: JobControl) -> dict:
        control.begin(1, job.request.steps)
        for step in range(job.request.steps):
            if control.should_stop:
                break
            time.sleep(0.01)
            control.step(step + 1)
        log.append(job.request.label)
        return {"label": job.request.label}
    return run


def _queue(db: Path, log: list[str]) -> JobQueue:
    return JobQueue({"work": _handler(log)}, store=JobStore(db), request_types={"work": Work},
                    describe=lambda kind, result: {"echo": result["label"]})


def test_store_schema_wal_and_round_trip(tmp_path: Path) -> None:
    log: list[str] = []
    queue = _queue(tmp_path / "jobs.sqlite3", log)
    queue.start()
    job = queue.submit(Work(label="one"), owner="alice", source="api", idempotency_key="k")
    queue.wait(job.id, timeout=10)
    queue.shutdown()
    with sqlite3.connect(tmp_path / "jobs.sqlite3") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        row = db.execute("SELECT kind, owner, source, state, idempotency_key, request_json, result_json, error"
                         " FROM jobs").fetchone()
    assert row[:5] == ("work", "alice", "api", "succeeded", "k")
    assert '"kind":"work"' in row[5] and '"label":"one"' in row[5]
    assert row[6] == '{"echo": "one"}' and row[7] is None


def test_restart_resumes_queued_fails_running_keeps_finished(tmp_path: Path) -> None:
    db = tmp_path / "jobs.sqlite3"
    store = JobStore(db)
    first: list[str] = []
    queue = JobQueue({"work": _handler(first)}, store=store, request_types={"work": Work},
                     describe=lambda kind, result: {"echo": result["label"]})
    queue.start()
    done = queue.submit(Work(label="done"), owner="a")
    queue.wait(done.id, timeout=10)
    running = queue.submit(Work(label="running", steps=500), owner="a")
    while queue.current() is None or queue.current().id != running.id:
        time.sleep(0.01)
    waiting = [queue.submit(Work(label=f"w{i}"), owner=o) for i, o in enumerate("abab")]
    not_saved = queue.submit(Work(label="sdapi", save_images=False), owner="sdapi-anonymous", source="sdapi")
    # simulate a crash: the worker is abandoned mid-job, nothing is written at exit
    store.close()

    second: list[str] = []
    restarted = _queue(db, second)
    report = restarted.restore()
    queue.shutdown(timeout=0)  # let the abandoned worker go (its late writes hit a closed store)
    assert (report.resumed, report.failed_running, report.dropped) == (4, 1, 1)
    crashed = restarted.lookup(running.id)
    assert crashed.state is JobState.FAILED and crashed.error == CRASH_REASON
    dropped = restarted.lookup(not_saved.id)
    assert dropped.state is JobState.CANCELLED and dropped.error == NOT_RESUMED
    kept = restarted.lookup(done.id)
    assert kept.state is JobState.SUCCEEDED and kept.result_meta == {"echo": "done"} and kept.done.is_set()
    restarted.start()
    for job in waiting:
        assert restarted.wait(job.id, timeout=10).state is JobState.SUCCEEDED
    restarted.shutdown()
    assert second == ["w0", "w1", "w2", "w3"]  # submission order, alternating owners
    ids = [j.id for j in restarted.list_jobs(limit=10)]
    assert ids[0] == not_saved.id and len(ids) == 7  # newest first, everything recorded
    assert {j.id for j in restarted.list_jobs(states=[JobState.FAILED])} == {running.id}
    # numbering continues after the restored jobs
    assert restarted.submit(Work(label="new")).seq > not_saved.seq


def test_idempotency_survives_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "jobs.sqlite3"
    queue = _queue(db, [])
    queue.start()
    job, _ = queue.submit_once(Work(label="x"), owner="a", idempotency_key="once")
    queue.wait(job.id, timeout=10)
    queue.shutdown()
    again = _queue(db, [])
    again.restore()
    replay, created = again.submit_once(Work(label="x"), owner="a", idempotency_key="once")
    assert not created and replay.id == job.id and replay.state is JobState.SUCCEEDED


def test_shutdown_marks_the_running_job_and_keeps_the_queue(tmp_path: Path) -> None:
    db = tmp_path / "jobs.sqlite3"
    queue = _queue(db, [])
    queue.start()
    running = queue.submit(Work(label="long", steps=1000, save_images=False))  # not resumable: it fails
    waiting = queue.submit(Work(label="later"))
    while queue.current() is None:
        time.sleep(0.01)
    queue.shutdown()
    assert running.state is JobState.FAILED and "shutdown" in running.error
    again = _queue(db, [])
    assert again.restore().resumed == 1 and again.lookup(waiting.id).state is JobState.QUEUED


def test_corrupt_database_is_moved_aside(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "jobs.sqlite3"
    db.write_bytes(b"this is not a database" * 100)
    store = open_job_store(db)
    assert store.max_seq() == 0
    store.close()
    assert list(tmp_path.glob("jobs.sqlite3.corrupt-*"))
