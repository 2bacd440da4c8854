"""A wide lane (issue 30): ``set_lane_width`` runs N jobs of a lane at once (one worker per Ray actor),
while fairness, cancel and the job store are the queue's as ever; and the actor pool's choices
(:mod:`modules.distributed.pool`: model affinity, a job whose actor died goes first). No Ray here."""

from __future__ import annotations

import threading
import time
from typing import Any, Literal

import pytest
from pydantic import BaseModel

from modules.distributed.pool import ActorPool, ActorSlot, NoActorLeft
from modules.jobs.lanes import DEVICE_LANE
from modules.jobs.model import Job, JobState
from modules.jobs.progress import JobControl
from modules.jobs.queue import JobQueue


class Hold(BaseModel):
    kind: Literal["hold"] = "hold"
    label: str = ""


def _queue(width: int) -> tuple[JobQueue, dict[str, threading.Event], list[str]]:
    release: dict[str, threading.Event] = {}
    started: list[str] = []
    lock = threading.Lock()

    def handle(job: Job, control: JobControl) -> Any:
        label = job.request.label  # type: ignore[union-attr]
        with lock:
            started.append(label)
        event = release.setdefault(label, threading.Event())
        while not event.wait(0.01):
            if control.should_stop:
                return "stopped"
        return label

    queue = JobQueue({"hold": handle})
    queue.set_lane_width(DEVICE_LANE, width)
    queue.start()
    return queue, release, started


def _wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, "timed out"
        time.sleep(0.01)


def test_a_wide_lane_runs_jobs_side_by_side_and_cancels_only_the_one_named() -> None:
    queue, release, started = _queue(2)
    try:
        jobs = [queue.submit(Hold(label=f"j{i}"), owner=f"o{i % 2}") for i in range(3)]
        _wait_for(lambda: len(started) == 2)
        assert sorted(job.id for job in queue.running()) == sorted(job.id for job in jobs[:2])
        assert queue.position(jobs[0].id) == 0 and queue.position(jobs[1].id) == 0 and queue.position(jobs[2].id) == 1
        assert queue.cancel(jobs[1].id)  # the second slot's job: only it stops
        queue.wait(jobs[1].id, 5)
        assert jobs[1].state is JobState.CANCELLED
        _wait_for(lambda: len(started) == 3)  # its worker takes the next job
        assert jobs[0].state is JobState.RUNNING
        for event in ("j0", "j2"):
            release.setdefault(event, threading.Event()).set()
        queue.wait(jobs[0].id, 5)
        queue.wait(jobs[2].id, 5)
        assert [jobs[0].state, jobs[2].state] == [JobState.SUCCEEDED, JobState.SUCCEEDED]
    finally:
        queue.shutdown()


def test_a_lane_of_width_one_runs_one_job_at_a_time() -> None:
    queue, release, started = _queue(1)
    try:
        first, second = queue.submit(Hold(label="a")), queue.submit(Hold(label="b"))
        _wait_for(lambda: len(started) == 1)
        time.sleep(0.1)
        assert started == ["a"] and queue.position(second.id) == 1
        release.setdefault("a", threading.Event()).set()
        release.setdefault("b", threading.Event()).set()
        queue.wait(second.id, 5)
        assert first.state is second.state is JobState.SUCCEEDED
    finally:
        queue.shutdown()


def test_the_width_is_set_before_the_queue_starts() -> None:
    queue, _, _ = _queue(1)
    try:
        with pytest.raises(RuntimeError):
            queue.set_lane_width(DEVICE_LANE, 3)
    finally:
        queue.shutdown()


def test_the_pool_prefers_the_actor_holding_the_checkpoint_then_an_empty_one() -> None:
    a, b, c = ActorSlot("a", None), ActorSlot("b", None), ActorSlot("c", None)
    pool = ActorPool([a, b, c])
    pool.release(pool.acquire("j1", "x"), "x")       # a now holds x
    pool.release(pool.acquire("j2", "y"), "y")       # not a: b (empty) takes y
    assert (a.checkpoint, b.checkpoint) == ("x", "y")
    assert pool.acquire("j3", "y") is b
    assert pool.acquire("j4", "x") is a
    assert pool.acquire("j5", "z") is c


def test_a_job_whose_actor_died_goes_first_and_none_left_says_why() -> None:
    a, b = ActorSlot("a", None), ActorSlot("b", None)
    pool = ActorPool([a, b])
    taken = pool.acquire("long", "x")
    other = pool.acquire("busy", "x")
    got: dict[str, ActorSlot | None] = {}
    failed: list[str] = []

    def new_job() -> None:
        try:
            got["new"] = pool.acquire("new", "x")
        except NoActorLeft as exc:
            failed.append(str(exc))

    waiting = threading.Thread(target=new_job)
    waiting.start()
    time.sleep(0.1)
    retry = threading.Thread(target=lambda: got.setdefault("retry", pool.acquire("long", "x", retry=True)))
    retry.start()
    time.sleep(0.1)
    pool.mark_dead(taken, "killed")
    pool.release(other, "x")  # one actor free: the retried job gets it, the new one still waits
    retry.join(5)
    assert got.get("retry") is other and "new" not in got
    pool.mark_dead(other, "killed again")
    waiting.join(5)
    assert "new" not in got and failed and "killed again" in failed[0]  # nothing is left: it says so
    with pytest.raises(NoActorLeft, match="killed again"):
        pool.acquire("later", "x")
