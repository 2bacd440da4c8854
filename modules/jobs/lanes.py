"""Lanes: the queue's parallel workers, one per lane, so a long training job runs beside generation.

Every job kind declares its lane (:attr:`modules.jobs.kinds.JobKind.lane`, ``"device"`` unless it says
otherwise). Each lane has its own worker thread, its own round-robin waiting room
(:class:`~modules.jobs.fairness.RoundRobin`) and its own running job; the queue's lock guards them all.
A lane may be *wide* (``width`` workers, each with its running job, all fed from the one waiting room):
with ``--ray`` the device lane has one worker per Ray actor (:mod:`modules.distributed`).
A kind may also declare lanes it *yields to*: while one of those lanes has work (a job waiting or
running), the running job of that kind is asked to pause at its next step
(:meth:`~modules.jobs.progress.JobControl.pause_point`), and is released when that lane is idle again,
so a training run gives the device back to a generation the moment someone asks for one.

Not thread-safe by itself: :class:`~modules.jobs.queue.JobQueue` holds its lock around every call.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Iterator

from modules.jobs.fairness import RoundRobin
from modules.jobs.model import Job

#: the lane of generation and every other device job unless a kind names another; interrupt and skip
#: without a job id (A1111's buttons) address the job running here
DEVICE_LANE = "device"


@dataclass(frozen=True)
class LaneSpec:
    """Where a kind runs, and which lanes it pauses for."""

    lane: str = DEVICE_LANE
    yields_to: tuple[str, ...] = ()


#: a kind's name -> its lane (the job-kind registry's :meth:`~modules.jobs.kinds.JobKindRegistry.lane_of`)
LanePolicy = Callable[[str], LaneSpec]


def single_lane(kind: str) -> LaneSpec:
    """The policy of a queue built without one: every kind in the device lane."""
    return LaneSpec()


@dataclass(eq=False)
class Lane:
    """One lane's waiting room, its running jobs and workers (``width`` of them: one unless the lane is
    spread over several devices, e.g. Ray actors), with the workers' health."""

    name: str
    waiting: RoundRobin = field(default_factory=RoundRobin)
    width: int = 1                  # worker threads, so jobs running at once
    running_jobs: dict[int, Job] = field(default_factory=dict)              # worker slot -> its job
    workers: dict[int, threading.Thread] = field(default_factory=dict)     # worker slot -> its thread
    error: str | None = None        # why its worker last crashed or stopped
    restarts: int = 0
    crashes_in_a_row: int = 0
    paused: str | None = None       # why its waiting jobs are held back (a full disk)

    @property
    def current(self) -> Job | None:
        """The running job of its first busy worker (the device lane's: what A1111's progress shows)."""
        return self.running_jobs[min(self.running_jobs)] if self.running_jobs else None

    @property
    def started(self) -> bool:
        return bool(self.workers)

    @property
    def busy(self) -> bool:
        """A job of this lane waits or runs (what the kinds that yield to it pause for)."""
        return bool(self.running_jobs) or bool(self.waiting)

    @property
    def alive(self) -> bool:
        return bool(self.workers) and all(worker.is_alive() for worker in self.workers.values())


class Lanes:
    """The queue's lanes by name, the device lane first; a lane is made the first time a job names it."""

    def __init__(self) -> None:
        self._lanes: dict[str, Lane] = {DEVICE_LANE: Lane(DEVICE_LANE)}
        self._widths: dict[str, int] = {}

    def get(self, name: str) -> Lane:
        lane = self._lanes.get(name)
        if lane is None:
            lane = self._lanes[name] = Lane(name, width=self._widths.get(name, 1))
        return lane

    def set_width(self, name: str, width: int) -> None:
        """Run ``width`` jobs of lane ``name`` at once (before its workers start)."""
        self._widths[name] = max(1, int(width))
        self.get(name).width = self._widths[name]

    def __iter__(self) -> Iterator[Lane]:
        return iter(list(self._lanes.values()))

    @property
    def device(self) -> Lane:
        return self._lanes[DEVICE_LANE]

    def waiting(self, owner: str | None = None) -> int:
        """Jobs waiting in all lanes (``owner``'s only, when given): the queue's limits count them together."""
        return sum(len(lane.waiting) if owner is None else lane.waiting.count(owner) for lane in self._lanes.values())

    def running(self) -> list[Job]:
        return [job for lane in self._lanes.values() for _, job in sorted(lane.running_jobs.items())]

    def running_job(self, job_id: str) -> Job | None:
        return next((job for job in self.running() if job.id == job_id), None)

    def position(self, job_id: str) -> int | None:
        """0 when running, 1.. in its lane's waiting order, None when neither."""
        for lane in self._lanes.values():
            if any(job.id == job_id for job in lane.running_jobs.values()):
                return 0
            found = lane.waiting.position(job_id)
            if found is not None:
                return found
        return None

    def update_yields(self, policy: LanePolicy) -> None:
        """Ask each running job that yields to a busy lane to pause; release those whose lanes are idle."""
        for lane in self._lanes.values():
            for job in lane.running_jobs.values():
                self._update_yield(lane, job, policy)

    def _update_yield(self, lane: Lane, job: Job, policy: LanePolicy) -> None:
        yields_to = policy(job.kind).yields_to
        busy = [name for name in yields_to if name != lane.name and name in self._lanes and self._lanes[name].busy]
        if busy:
            job.control.request_pause(f"waiting for the {', '.join(busy)} lane")
        else:
            job.control.release_pause()
