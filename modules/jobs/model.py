"""What a job is: its states, the live :class:`Job` record and the errors a submit can raise."""

from __future__ import annotations

import enum
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from pydantic import BaseModel

from modules.jobs.progress import JobControl, Progress


class JobState(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    #: was running when the process died, and its kind offers to resume it (``JobKind.on_interrupted``)
    INTERRUPTED = "interrupted"

    @property
    def finished(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.INTERRUPTED)


class QueueFullError(RuntimeError):
    """The queue (or this owner's share of it) already holds its maximum number of jobs (HTTP 429)."""


class LimitExceededError(ValueError):
    """A request asks for more than the server allows: image size, images per job (HTTP 413)."""


class IdempotencyConflictError(ValueError):
    """An ``Idempotency-Key`` was used before with a different request (HTTP 409)."""


class DiskFullError(RuntimeError):
    """Too little free space where jobs write (HTTP 507). The message names the folder (relative to the
    data dir), the free space and the space needed, so a user knows what to clear."""


class JobFailure(Exception):
    """Raised by handlers for an expected, user-facing failure (message shown as is)."""


#: the reason recorded on a job that was running when the process died
CRASH_REASON = "interrupted by a restart/crash"
#: the reason recorded on such a job of a kind that offers to resume it (state ``interrupted``)
INTERRUPTED_REASON = "interrupted by a restart/crash: resume it to continue from its last checkpoint"
SHUTDOWN_REASON = "interrupted by a server shutdown"
#: added to SHUTDOWN_REASON for a job that goes back to the queue (it runs again at the next start)
REQUEUED_NOTE = "queued again: it runs again at the next start"
#: the reason a waiting job's waiter is released with when the server stops before the job started
STOPPED_BEFORE_START = "the server stopped before this job started"


@dataclass
class Job:
    """One job, live in memory (or rebuilt from the job store once it is finished).

    ``owner`` is who submitted it (an API key, a basic-auth user, "webui", "sdapi-anonymous");
    ``source`` is the door it came in by ("sdapi", "api", "webui", ...). ``keep_outputs`` makes the
    handler save every image it produces (native API jobs: nothing finished may be lost).
    ``result_meta`` is what the job store keeps of the result: file paths, seeds, infotexts.
    """

    id: str
    kind: str
    request: BaseModel | None
    owner: str | None = None
    source: str = "internal"
    state: JobState = JobState.QUEUED
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    result: Any = None
    result_meta: dict[str, Any] | None = None
    error: str | None = None
    user_error: bool = False    # True: the request was at fault (4xx); False: an internal failure
    out_of_space: bool = False  # it failed for lack of disk space (HTTP 507 to a waiting caller)
    control: JobControl = field(default_factory=JobControl)
    done: threading.Event = field(default_factory=threading.Event)
    seq: int = 0
    idempotency_key: str | None = None
    request_hash: str | None = None
    keep_outputs: bool = False
    resumable: bool = False
    last_event_at: float = 0.0
    lane: str = "device"        # the queue lane it runs in (its kind's; modules.jobs.lanes)

    @property
    def progress(self) -> Progress:
        return self.control.snapshot()


Handler = Callable[[Job, JobControl], Any]
Describer = Callable[[str, Any], "dict[str, Any] | None"]
