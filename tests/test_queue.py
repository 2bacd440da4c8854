"""The job queue: FIFO on one worker, per-job cancel, interrupt only the running job."""

from __future__ import annotations

import threading
import time
from typing import Literal

import pytest
from pydantic import BaseModel

from modules.jobs.progress import JobControl
from modules.jobs.queue import Job, JobFailure, JobQueue, JobState, QueueFullError


class Sleep(BaseModel):
    kind: Literal["sleep"] = "sleep"
    steps: int = 5
    fail: str = ""


def _sleep_handler(log: list[str]):
    def handler(job: Job, control: JobControl) -> list[int]:
        req = job.request
        if req.fail == "user":
            raise JobFailure("bad input, explained")
        if req.fail == "bug":
            raise RuntimeError("boom")
        control.begin(1, req.steps)
        done = []
        for step in range(req.steps):
            if control.should_stop:
                break
            time.sleep(0.02)
            control.step(step + 1)
            done.append(step)
        log.append(job.id)
        return done
    return handler


@pytest.fixture()
def queue_and_log():
    log: list[str] = []
    queue = JobQueue({"sleep": _sleep_handler(log)}, max_waiting=3)
    queue.start()
    yield queue, log
    queue.shutdown()


def test_fifo_order_and_results(queue_and_log) -> None:
    queue, log = queue_and_log
    jobs = [queue.submit(Sleep(steps=2)) for _ in range(3)]
    for job in jobs:
        queue.wait(job.id, timeout=10)
    assert log == [j.id for j in jobs]
    assert all(j.state is JobState.SUCCEEDED and j.result == [0, 1] for j in jobs)


def test_failures_are_recorded_and_worker_survives(queue_and_log) -> None:
    queue, _ = queue_and_log
    user = queue.submit(Sleep(fail="user"))
    bug = queue.submit(Sleep(fail="bug"))
    ok = queue.submit(Sleep(steps=1))
    for job in (user, bug, ok):
        queue.wait(job.id, timeout=10)
    assert user.state is JobState.FAILED and user.user_error and user.error == "bad input, explained"
    assert bug.state is JobState.FAILED and not bug.user_error and "boom" in bug.error
    assert ok.state is JobState.SUCCEEDED


def test_cancel_waiting_job_never_runs_and_other_jobs_continue(queue_and_log) -> None:
    queue, log = queue_and_log
    first = queue.submit(Sleep(steps=20))
    second = queue.submit(Sleep(steps=1))
    third = queue.submit(Sleep(steps=1))
    assert queue.cancel(second.id)
    for job in (first, third):
        queue.wait(job.id, timeout=10)
    assert second.state is JobState.CANCELLED and second.id not in log
    assert first.state is JobState.SUCCEEDED and third.state is JobState.SUCCEEDED


def test_interrupt_stops_only_the_running_job(queue_and_log) -> None:
    queue, _ = queue_and_log
    running = queue.submit(Sleep(steps=200))
    waiting = queue.submit(Sleep(steps=2))
    deadline = time.time() + 5
    while queue.current() is None and time.time() < deadline:
        time.sleep(0.01)
    assert queue.position(running.id) == 0 and queue.position(waiting.id) == 1
    queue.interrupt()
    queue.wait(running.id, timeout=10)
    queue.wait(waiting.id, timeout=10)
    assert running.state is JobState.SUCCEEDED and len(running.result) < 200
    assert waiting.result == [0, 1]


def test_queue_limit(queue_and_log) -> None:
    queue, _ = queue_and_log
    blocker = queue.submit(Sleep(steps=100))
    while queue.current() is None:
        time.sleep(0.01)
    for _ in range(3):
        queue.submit(Sleep(steps=1))
    with pytest.raises(QueueFullError):
        queue.submit(Sleep(steps=1))
    queue.cancel(blocker.id)


def test_progress_fraction_and_eta() -> None:
    control = JobControl()
    control.begin(job_count=2, total_steps=10)
    control.begin_batch(1)
    control.step(5)
    snap = control.snapshot()
    assert snap.fraction == pytest.approx(0.75)
    assert snap.eta_seconds() is not None
