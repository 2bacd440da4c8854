"""Round-robin across owners: the waiting room of the job queue.

Each owner (an API key, a basic-auth user, "webui", "sdapi-anonymous") has its own FIFO line.
The worker always serves the owner it served least recently (owners never served first, then
by who has waited longest), one job at a time, so one client queueing a hundred jobs cannot
starve another who queues one, and an owner whose job is running goes after the others.
Within one owner, jobs run in the order they were submitted. Not thread-safe by itself:
:class:`~modules.jobs.queue.JobQueue` holds its lock around every call.
"""

from __future__ import annotations

import itertools
from collections import deque
from typing import Iterator

from modules.jobs.model import Job

MAX_REMEMBERED_OWNERS = 10_000


def _key(owner: str | None) -> str:
    return owner or ""


class RoundRobin:
    """Waiting jobs grouped by owner; the least recently served owner goes next."""

    def __init__(self) -> None:
        self._lines: dict[str, deque[Job]] = {}
        self._served: dict[str, int] = {}     # owner -> when it was last served (a counter)
        self._clock = itertools.count(1)

    def __len__(self) -> int:
        return sum(len(line) for line in self._lines.values())

    def __bool__(self) -> bool:
        return bool(self._lines)

    def __iter__(self) -> Iterator[Job]:
        return iter(self.order())

    def count(self, owner: str | None) -> int:
        line = self._lines.get(_key(owner))
        return len(line) if line else 0

    def push(self, job: Job) -> None:
        self._lines.setdefault(_key(job.owner), deque()).append(job)

    def mark_served(self, owner: str | None) -> None:
        """Record that ``owner`` was just served (also used for jobs restored after a restart)."""
        self._served[_key(owner)] = next(self._clock)
        if len(self._served) > MAX_REMEMBERED_OWNERS:
            idle = [k for k in self._served if k not in self._lines]
            for key in sorted(idle, key=self._served.__getitem__)[: len(idle) // 2]:
                del self._served[key]

    @staticmethod
    def _pick(lines: dict[str, deque[Job]] | dict[str, list[Job]], served: dict[str, int]) -> str:
        return min(lines, key=lambda k: (served.get(k, 0), lines[k][0].seq))

    def pop(self) -> Job | None:
        """The next job: the first of the least recently served owner."""
        if not self._lines:
            return None
        key = self._pick(self._lines, self._served)
        line = self._lines[key]
        job = line.popleft()
        if not line:
            del self._lines[key]
        self.mark_served(job.owner)
        return job

    def remove(self, job: Job) -> bool:
        key = _key(job.owner)
        line = self._lines.get(key)
        if not line or job not in line:
            return False
        line.remove(job)
        if not line:
            del self._lines[key]
        return True

    def order(self) -> list[Job]:
        """Every waiting job in the order the worker will take them (if nothing else arrives)."""
        lines = {key: list(line) for key, line in self._lines.items()}
        served = dict(self._served)
        clock = max(served.values(), default=0)
        planned: list[Job] = []
        while lines:
            key = self._pick(lines, served)
            planned.append(lines[key].pop(0))
            if not lines[key]:
                del lines[key]
            clock += 1
            served[key] = clock
        return planned

    def position(self, job_id: str) -> int | None:
        """1 for the job that runs next, 2 for the one after, ...; None when not waiting."""
        for index, job in enumerate(self.order(), start=1):
            if job.id == job_id:
                return index
        return None
