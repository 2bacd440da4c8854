"""The job queue: FIFO on one worker, per-job cancel, interrupt only the running job."""

from __future__ import annotations

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


class Owned(BaseModel):
    kind: Literal["sleep"] = "sleep"
    steps: int = 1
    fail: str = ""
    width: int | None = None
    height: int | None = None
    batch_size: int = 1
    n_iter: int = 1


def test_round_robin_across_owners() -> None:
    from modules.jobs.limits import QueueLimits

    log: list[str] = []
    queue = JobQueue({"sleep": _sleep_handler(log)}, limits=QueueLimits(max_waiting=50, max_waiting_per_owner=10))
    blocker = queue.submit(Owned(steps=1), owner="alice")
    flood = [queue.submit(Owned(), owner="alice") for _ in range(4)]
    bob = queue.submit(Owned(), owner="bob")
    carol = queue.submit(Owned(), owner="carol")
    # alice's first job runs first (she came first); then bob and carol, who were never served,
    # go before the rest of alice's flood
    assert [queue.position(j.id) for j in (blocker, bob, carol, *flood)] == [1, 2, 3, 4, 5, 6, 7]
    queue.start()
    try:
        for job in (blocker, bob, carol, *flood):
            queue.wait(job.id, timeout=10)
    finally:
        queue.shutdown()
    assert log == [blocker.id, bob.id, carol.id, *[j.id for j in flood]]


def test_owners_alternate() -> None:
    queue = JobQueue({"sleep": _sleep_handler([])})
    alice = [queue.submit(Owned(), owner="alice") for _ in range(3)]
    bob = [queue.submit(Owned(), owner="bob") for _ in range(2)]
    order = sorted([*alice, *bob], key=lambda j: queue.position(j.id))
    assert order == [alice[0], bob[0], alice[1], bob[1], alice[2]]
    queue.cancel(bob[0].id)
    assert queue.position(bob[1].id) == 2


def test_the_owner_whose_job_runs_goes_after_the_others(queue_and_log) -> None:
    queue, log = queue_and_log
    running = queue.submit(Owned(steps=30), owner="alice")
    while queue.current() is None:
        time.sleep(0.01)
    mine = queue.submit(Owned(), owner="alice")
    theirs = queue.submit(Owned(), owner="bob")
    assert queue.position(theirs.id) == 1 and queue.position(mine.id) == 2
    for job in (running, mine, theirs):
        queue.wait(job.id, timeout=10)
    assert log[-2:] == [theirs.id, mine.id]


def test_limits_per_owner_size_and_count() -> None:
    from modules.jobs.limits import QueueLimits
    from modules.jobs.model import LimitExceededError

    queue = JobQueue({"sleep": _sleep_handler([])},
                     limits=QueueLimits(max_waiting=5, max_waiting_per_owner=2, max_pixels=64 * 64, max_images=4))
    queue.submit(Owned(), owner="a")
    queue.submit(Owned(), owner="a")
    with pytest.raises(QueueFullError, match="for a"):
        queue.submit(Owned(), owner="a")
    queue.submit(Owned(), owner="b")
    with pytest.raises(LimitExceededError, match="--max-pixels"):
        queue.submit(Owned(width=128, height=64), owner="c")
    with pytest.raises(LimitExceededError, match="--max-images"):
        queue.submit(Owned(batch_size=2, n_iter=3), owner="c")
    queue.submit(Owned(width=64, height=64, batch_size=2, n_iter=2), owner="c")


def test_idempotency_key_in_memory() -> None:
    from modules.jobs.model import IdempotencyConflictError

    queue = JobQueue({"sleep": _sleep_handler([])})
    first, created = queue.submit_once(Owned(steps=2), owner="a", idempotency_key="k1")
    again, created_again = queue.submit_once(Owned(steps=2), owner="a", idempotency_key="k1")
    assert created and not created_again and again is first
    other_owner, created_other = queue.submit_once(Owned(steps=2), owner="b", idempotency_key="k1")
    assert created_other and other_owner is not first
    with pytest.raises(IdempotencyConflictError):
        queue.submit_once(Owned(steps=3), owner="a", idempotency_key="k1")


def test_events_for_a_job() -> None:
    from modules.jobs.events import EventBus

    bus = EventBus()
    seen: list[tuple[str, str]] = []
    bus.subscribe(lambda e: seen.append((e.type, e.job_id)))
    queue = JobQueue({"sleep": _sleep_handler([])}, events=bus)
    queue.start()
    try:
        ok = queue.submit(Owned(steps=3))
        bad = queue.submit(Owned(fail="user"))
        gone = queue.submit(Owned())
        queue.cancel(gone.id)
        for job in (ok, bad):
            queue.wait(job.id, timeout=10)
    finally:
        queue.shutdown()
    assert [t for t, j in seen if j == ok.id][:2] == ["queued", "started"]
    assert [t for t, j in seen if j == ok.id][-1] == "finished" and ("progress", ok.id) in seen
    assert [t for t, j in seen if j == bad.id][-1] == "failed"
    assert [t for t, j in seen if j == gone.id] == ["queued", "cancelled"]
