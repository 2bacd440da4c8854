"""Queue lanes (issue 24, point 3): one worker per lane, so a training-like job runs beside generation.

The kinds here are fakes declared through the real registry (:class:`JobKind` with ``lane`` and
``yields_to``): ``gen`` stands for txt2img (device lane), ``train`` for a long training run in the
``training`` lane, ``train_yielding`` for one that pauses while the device lane has work. Each job runs
until the test releases it (``hold`` names an event), so what runs at the same time is decided by the
test, not by timing luck.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable, Literal

import pytest
from pydantic import BaseModel

from modules.jobs.kinds import JobKind, JobKindRegistry
from modules.jobs.lanes import DEVICE_LANE, LaneSpec
from modules.jobs.model import Job, JobState
from modules.jobs.progress import JobControl
from modules.jobs.queue import JobQueue
from modules.jobs.store import JobStore

TRAINING = "training"


class Gen(BaseModel):
    kind: Literal["gen"] = "gen"
    label: str = ""
    hold: str = ""      # wait for this event (or a stop) before finishing


class Train(BaseModel):
    kind: Literal["train"] = "train"
    label: str = ""
    hold: str = ""


class TrainYielding(BaseModel):
    kind: Literal["train_yielding"] = "train_yielding"
    label: str = ""
    steps: int = 40


class World:
    """What the fake handlers share with the test: events that release held jobs, steps taken."""

    def __init__(self) -> None:
        self.events: dict[str, threading.Event] = {}
        self.steps: dict[str, int] = {}
        self.started: dict[str, threading.Event] = {}
        self.ran: list[str] = []

    def event(self, name: str) -> threading.Event:
        return self.events.setdefault(name, threading.Event())

    def began(self, label: str) -> threading.Event:
        return self.started.setdefault(label, threading.Event())

    def held(self, job: Job, control: JobControl) -> dict:
        req = job.request
        self.began(req.label).set()
        control.begin(1, 1)
        while req.hold and not self.event(req.hold).is_set() and not control.should_stop:
            if control.should_skip_batch:
                break
            time.sleep(0.005)
        self.ran.append(req.label)
        return {"label": req.label}

    def yielding(self, job: Job, control: JobControl) -> dict:
        req = job.request
        self.began(req.label).set()
        control.begin(1, req.steps)
        for step in range(req.steps):
            control.pause_point()
            if control.should_stop:
                break
            time.sleep(0.01)
            self.steps[req.label] = step + 1
            control.step(step + 1)
        self.ran.append(req.label)
        return {"label": req.label, "steps": self.steps.get(req.label, 0)}


def _run(world: World, method: Callable[[Job, JobControl], dict]) -> Callable[[Any, Job, JobControl], dict]:
    return lambda ctx, job, control: method(job, control)


def registry(world: World) -> JobKindRegistry:
    return JobKindRegistry([
        JobKind(name="gen", request=Gen, run=_run(world, world.held)),
        JobKind(name="train", request=Train, run=_run(world, world.held), lane=TRAINING),
        JobKind(name="train_yielding", request=TrainYielding, run=_run(world, world.yielding), lane=TRAINING,
                yields_to=(DEVICE_LANE,)),
    ])


def make_queue(world: World, store: JobStore | None = None) -> JobQueue:
    kinds = registry(world)
    queue = JobQueue({}, store=store, request_types=kinds.request_types(), lanes=kinds.lane_of)
    queue.attach_handlers(kinds.handlers(None))  # type: ignore[arg-type] - the fakes use no app context
    return queue


def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.005)


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def queue(world: World):
    queue = make_queue(world)
    queue.start()
    yield queue
    for event in world.events.values():
        event.set()
    queue.shutdown()


def test_kinds_declare_their_lane_and_the_registry_reads_it(world: World) -> None:
    kinds = registry(world)
    assert kinds.lane_of("gen") == LaneSpec(DEVICE_LANE, ())
    assert kinds.lane_of("train") == LaneSpec(TRAINING, ())
    assert kinds.lane_of("train_yielding") == LaneSpec(TRAINING, (DEVICE_LANE,))
    assert kinds.lane_of("not-a-kind") == LaneSpec()  # the device lane, as everything was before lanes


def test_device_jobs_finish_while_a_training_job_runs_in_its_own_lane(queue: JobQueue, world: World) -> None:
    train = queue.submit(Train(label="train", hold="train-done"))
    assert world.began("train").wait(5)
    gens = [queue.submit(Gen(label=f"g{i}")) for i in range(3)]
    for job in gens:
        assert queue.wait(job.id, timeout=10).state is JobState.SUCCEEDED
    # every generation finished while the training job kept running beside them
    assert train.state is JobState.RUNNING and queue.current(TRAINING) is train
    assert world.ran == ["g0", "g1", "g2"] and queue.current() is None
    assert queue.position(train.id) == 0 and train.lane == TRAINING and gens[0].lane == DEVICE_LANE
    assert set(queue.worker_status().lanes) == {DEVICE_LANE, TRAINING} and queue.worker_status().alive
    world.event("train-done").set()
    assert queue.wait(train.id, timeout=10).state is JobState.SUCCEEDED


def test_positions_count_within_each_lane(queue: JobQueue, world: World) -> None:
    running_gen = queue.submit(Gen(label="g-run", hold="g"))
    running_train = queue.submit(Train(label="t-run", hold="t"))
    assert world.began("g-run").wait(5) and world.began("t-run").wait(5)
    waiting_gen = queue.submit(Gen(label="g-wait"))
    waiting_train = queue.submit(Train(label="t-wait"))
    assert [queue.position(j.id) for j in (running_gen, running_train, waiting_gen, waiting_train)] == [0, 0, 1, 1]
    assert queue.waiting_count() == 2 and {j.id for j in queue.running()} == {running_gen.id, running_train.id}
    world.event("g").set()
    world.event("t").set()
    for job in (waiting_gen, waiting_train):
        assert queue.wait(job.id, timeout=10).state is JobState.SUCCEEDED


def test_interrupt_skip_and_cancel_reach_only_their_job(queue: JobQueue, world: World) -> None:
    train = queue.submit(Train(label="train", hold="never"), owner="alice")
    gen = queue.submit(Gen(label="gen", hold="never"), owner="bob")
    assert world.began("train").wait(5) and world.began("gen").wait(5)

    # A1111's Interrupt button (no job id) stops the device lane's job, never the training run
    assert queue.interrupt(owner="alice") is None  # alice's job is not the device lane's
    assert queue.interrupt() is gen
    assert queue.wait(gen.id, timeout=10).state is JobState.SUCCEEDED  # interrupted keeps what it made
    assert not train.control.interrupt_event.is_set() and train.state is JobState.RUNNING

    # skip by job id reaches the training job only
    gen2 = queue.submit(Gen(label="gen2", hold="never"))
    assert world.began("gen2").wait(5)
    assert queue.skip(job_id=train.id) is train
    assert train.control.skip_event.is_set() and not gen2.control.skip_event.is_set()
    assert queue.wait(train.id, timeout=10).state is JobState.SUCCEEDED

    # cancel reaches its own job in its own lane
    train2 = queue.submit(Train(label="train2", hold="never"))
    train3 = queue.submit(Train(label="train3"))  # waits behind train2 in the training lane
    assert world.began("train2").wait(5)
    assert queue.cancel(train3.id) and train3.state is JobState.CANCELLED
    assert queue.cancel(train2.id)
    assert queue.wait(train2.id, timeout=10).state is JobState.CANCELLED
    assert gen2.state is JobState.RUNNING and not gen2.control.should_stop
    assert queue.interrupt(job_id=gen2.id) is gen2
    assert queue.wait(gen2.id, timeout=10).state is JobState.SUCCEEDED
    assert "train3" not in world.ran


def test_a_yielding_job_pauses_while_the_device_lane_has_work_and_resumes_after(queue: JobQueue, world: World) -> None:
    train = queue.submit(TrainYielding(label="train", steps=60))
    wait_until(lambda: world.steps.get("train", 0) >= 3)
    gen = queue.submit(Gen(label="gen", hold="gen-done"))
    wait_until(lambda: train.control.paused)
    assert train.control.should_pause and train.progress.text.startswith("paused: waiting for the device lane")
    paused_at = world.steps["train"]
    assert world.began("gen").wait(5)
    time.sleep(0.3)  # ~30 steps' worth of time: a job that did not pause would have moved on
    assert world.steps["train"] == paused_at and train.state is JobState.RUNNING
    world.event("gen-done").set()
    assert queue.wait(gen.id, timeout=10).state is JobState.SUCCEEDED
    wait_until(lambda: world.steps["train"] > paused_at)  # the device lane is idle again: it resumes
    assert not train.control.should_pause
    assert queue.wait(train.id, timeout=20).state is JobState.SUCCEEDED and train.result["steps"] == 60


def test_a_yielding_job_that_starts_while_the_device_lane_is_busy_waits_before_its_first_step(
        queue: JobQueue, world: World) -> None:
    gen = queue.submit(Gen(label="gen", hold="gen-done"))
    assert world.began("gen").wait(5)
    train = queue.submit(TrainYielding(label="train", steps=5))
    assert world.began("train").wait(5)
    wait_until(lambda: train.control.paused)
    time.sleep(0.1)
    assert world.steps.get("train", 0) == 0
    # a paused job still stops when asked to
    assert queue.cancel(train.id)
    assert queue.wait(train.id, timeout=10).state is JobState.CANCELLED
    assert world.steps.get("train", 0) == 0 and gen.state is JobState.RUNNING
    world.event("gen-done").set()
    assert queue.wait(gen.id, timeout=10).state is JobState.SUCCEEDED


def test_a_steady_training_job_does_not_pause_for_the_device_lane(queue: JobQueue, world: World) -> None:
    train = queue.submit(Train(label="train", hold="train-done"))
    assert world.began("train").wait(5)
    gen = queue.submit(Gen(label="gen", hold="gen-done"))
    assert world.began("gen").wait(5)
    assert not train.control.should_pause  # only kinds that declare yields_to are asked to pause
    world.event("gen-done").set()
    world.event("train-done").set()
    for job in (gen, train):
        assert queue.wait(job.id, timeout=10).state is JobState.SUCCEEDED


def test_shutdown_stops_every_lane(world: World) -> None:
    queue = make_queue(world)
    queue.start()
    train = queue.submit(Train(label="train", hold="never"))
    gen = queue.submit(Gen(label="gen", hold="never"))
    assert world.began("train").wait(5) and world.began("gen").wait(5)
    queue.shutdown(timeout=5)
    assert train.done.is_set() and gen.done.is_set()
    assert train.state is JobState.FAILED and gen.state is JobState.FAILED  # "interrupted by a server shutdown"
    assert not queue.worker_status().alive


def test_restore_after_a_restart_puts_jobs_back_in_their_lanes(tmp_path: Path, world: World) -> None:
    db = tmp_path / "jobs.sqlite3"
    first_store = JobStore(db)
    first = make_queue(world, first_store)  # never started: its jobs stay queued, as at a crash
    train = first.submit(Train(label="train", hold="train-done"), resumable=True)
    gens = [first.submit(Gen(label=f"g{i}"), resumable=True) for i in range(2)]
    first_store.close()  # the process "dies" here

    second_store = JobStore(db)
    second = make_queue(world, second_store)
    report = second.restore()
    assert report.resumed == 3
    restored = {job.id: job for job in second.jobs()}
    assert restored[train.id].lane == TRAINING and all(restored[g.id].lane == DEVICE_LANE for g in gens)
    assert [second.position(g.id) for g in gens] == [1, 2] and second.position(train.id) == 1
    second.start()
    try:
        assert world.began("train").wait(5)
        for g in gens:  # the generations run beside the restored training job: they are in their own lane
            assert second.wait(g.id, timeout=10).state is JobState.SUCCEEDED
        assert second.current(TRAINING).id == train.id
        world.event("train-done").set()
        assert second.wait(train.id, timeout=10).state is JobState.SUCCEEDED
    finally:
        world.event("train-done").set()
        second.shutdown()
        second_store.close()
