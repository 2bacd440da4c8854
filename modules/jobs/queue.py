"""The job queue: the only way to the device.

The UI, the A1111 API and the native API all submit typed requests here. One worker thread
per device takes jobs in order and runs the handler registered for the job's kind. Every job
has its own id, progress, cancel and result, so one client can never interrupt another's job
by accident (``interrupt()`` stops only the running job, as A1111's button does).
"""

from __future__ import annotations

import enum
import itertools
import logging
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from pydantic import BaseModel

from modules.jobs.progress import JobControl, Progress

log = logging.getLogger(__name__)


class JobState(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class QueueFullError(RuntimeError):
    """The queue already holds its maximum number of waiting jobs."""


class JobFailure(Exception):
    """Raised by handlers for an expected, user-facing failure (message shown as is)."""


@dataclass
class Job:
    id: str
    kind: str
    request: BaseModel
    owner: str | None = None
    state: JobState = JobState.QUEUED
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    result: Any = None
    error: str | None = None
    user_error: bool = False    # True: the request was at fault (4xx); False: an internal failure
    control: JobControl = field(default_factory=JobControl)
    done: threading.Event = field(default_factory=threading.Event)
    seq: int = 0

    @property
    def progress(self) -> Progress:
        return self.control.snapshot()


Handler = Callable[[Job, JobControl], Any]


class JobQueue:
    """A FIFO queue with a single worker thread (one per device)."""

    def __init__(self, handlers: Mapping[str, Handler], *, max_waiting: int = 256,
                 keep_finished: int = 500, name: str = "device-0") -> None:
        self._handlers = dict(handlers)
        self._max_waiting = max_waiting
        self._keep_finished = keep_finished
        self._name = name
        self._cond = threading.Condition()
        self._waiting: deque[Job] = deque()
        self._jobs: dict[str, Job] = {}
        self._finished_order: deque[str] = deque()
        self._current: Job | None = None
        self._seq = itertools.count(1)
        self._worker: threading.Thread | None = None
        self._stopping = False

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        if self._worker is not None:
            return
        self._worker = threading.Thread(target=self._run, name=f"atelier-{self._name}", daemon=True)
        self._worker.start()

    def shutdown(self, timeout: float | None = 5.0) -> None:
        with self._cond:
            self._stopping = True
            if self._current is not None:
                self._current.control.interrupt_event.set()
            self._cond.notify_all()
        if self._worker is not None:
            self._worker.join(timeout)

    # -- submitting and querying ---------------------------------------------------------
    def submit(self, request: BaseModel, *, owner: str | None = None) -> Job:
        kind = getattr(request, "kind", None)
        if kind not in self._handlers:
            raise ValueError(f"no handler for job kind {kind!r}")
        with self._cond:
            if len(self._waiting) >= self._max_waiting:
                raise QueueFullError(f"the queue is full ({self._max_waiting} jobs waiting); try again later")
            job = Job(id=uuid.uuid4().hex, kind=kind, request=request, owner=owner, seq=next(self._seq))
            self._jobs[job.id] = job
            self._waiting.append(job)
            self._cond.notify_all()
        return job

    def get(self, job_id: str) -> Job | None:
        with self._cond:
            return self._jobs.get(job_id)

    def jobs(self) -> list[Job]:
        with self._cond:
            return sorted(self._jobs.values(), key=lambda j: j.seq)

    def current(self) -> Job | None:
        with self._cond:
            return self._current

    def waiting_count(self) -> int:
        with self._cond:
            return len(self._waiting)

    def position(self, job_id: str) -> int | None:
        """0 for the running job, 1.. for waiting jobs, None when finished or unknown."""
        with self._cond:
            if self._current is not None and self._current.id == job_id:
                return 0
            for index, job in enumerate(self._waiting, start=1):
                if job.id == job_id:
                    return index
            return None

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        job = self.get(job_id)
        if job is None:
            raise KeyError(job_id)
        job.done.wait(timeout)
        return job

    # -- stopping jobs -------------------------------------------------------------------
    def cancel(self, job_id: str) -> bool:
        """Cancel that job: drop it if waiting, stop it if running. False if unknown/finished."""
        with self._cond:
            job = self._jobs.get(job_id)
            if job is None or job.state.finished:
                return False
            if job.state is JobState.QUEUED:
                self._waiting.remove(job)
                self._finish(job, JobState.CANCELLED, error="cancelled before it started")
                return True
            job.control.cancel_event.set()
            return True

    def interrupt(self) -> Job | None:
        """Stop the running job (it keeps what it made so far, as in A1111)."""
        with self._cond:
            if self._current is not None:
                self._current.control.interrupt_event.set()
            return self._current

    def skip(self) -> Job | None:
        """Skip the current batch of the running job and go on with the next one."""
        with self._cond:
            if self._current is not None:
                self._current.control.skip_event.set()
            return self._current

    # -- worker --------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                job = self._waiting.popleft()
                job.state = JobState.RUNNING
                job.started_at = time.time()
                self._current = job
            self._execute(job)

    def _execute(self, job: Job) -> None:
        handler = self._handlers[job.kind]
        state, error, result = JobState.SUCCEEDED, None, None
        user_error = False
        try:
            result = handler(job, job.control)
            if job.control.cancel_event.is_set():
                state = JobState.CANCELLED
                error = "cancelled while running"
        except JobFailure as exc:
            state, error, user_error = JobState.FAILED, str(exc), True
        except Exception as exc:  # a bug or an unexpected library error: keep the worker alive
            log.exception("job %s (%s) failed", job.id, job.kind)
            state, error = JobState.FAILED, f"{type(exc).__name__}: {exc}"
        with self._cond:
            job.result = result
            job.user_error = user_error
            self._current = None
            self._finish(job, state, error=error)

    def _finish(self, job: Job, state: JobState, *, error: str | None) -> None:
        job.state = state
        job.error = error
        job.finished_at = time.time()
        job.done.set()
        self._finished_order.append(job.id)
        while len(self._finished_order) > self._keep_finished:
            self._jobs.pop(self._finished_order.popleft(), None)
        self._cond.notify_all()
