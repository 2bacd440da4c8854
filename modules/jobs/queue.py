"""The job queue: the only way to the device.

The UI, the A1111 API and the native API all submit typed requests here. One worker thread
per device runs the handler registered for each job's kind. Waiting jobs are served
round-robin across owners (:mod:`modules.jobs.fairness`); every job has its own id, progress,
cancel and result, so one client can never stop another's job by accident (``interrupt()``
stops only the running job, as A1111's button does, and can be limited to the caller's own).

With a :class:`~modules.jobs.store.JobStore` every job is recorded in SQLite as it is
submitted, started and finished; :meth:`JobQueue.restore` resumes the queued jobs of a previous
process. With an :class:`~modules.jobs.events.EventBus` every change is published as an event.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import threading
import time
import uuid
from dataclasses import dataclass, replace
from typing import Iterable, Mapping

from pydantic import BaseModel

from modules.jobs.events import EventBus
from modules.jobs.fairness import RoundRobin
from modules.jobs.limits import QueueLimits
from modules.jobs.model import (CRASH_REASON, SHUTDOWN_REASON, Describer, Handler, IdempotencyConflictError, Job,
                                JobFailure, JobState, LimitExceededError, QueueFullError)
from modules.jobs.progress import JobControl, Progress
from modules.jobs.store import JobStore, NewJob, StoredJob

__all__ = ["Handler", "IdempotencyConflictError", "Job", "JobControl", "JobFailure", "JobQueue", "JobState",
           "LimitExceededError", "Progress", "QueueFullError", "RestoreReport"]

log = logging.getLogger(__name__)

PROGRESS_EVENT_INTERVAL = 0.1   # seconds between two progress events of one job
NOT_RESUMED = "not resumed after a restart: its client has gone and its images would not have been saved"


@dataclass(frozen=True)
class RestoreReport:
    resumed: int = 0
    failed_running: int = 0
    dropped: int = 0


class JobQueue:
    """Round-robin across owners, a single worker thread (one per device)."""

    def __init__(self, handlers: Mapping[str, Handler], *, max_waiting: int | None = None,
                 keep_finished: int = 500, name: str = "device-0", limits: QueueLimits | None = None,
                 store: JobStore | None = None, events: EventBus | None = None,
                 request_types: Mapping[str, type[BaseModel]] | None = None,
                 describe: Describer | None = None) -> None:
        self._handlers = dict(handlers)
        limits = limits or QueueLimits()
        self._limits = replace(limits, max_waiting=max_waiting) if max_waiting is not None else limits
        self._keep_finished = keep_finished
        self._name = name
        self._store = store
        self.events = events or EventBus()
        self._request_types = dict(request_types or {})
        self._describe = describe
        self._cond = threading.Condition()
        self._submit_lock = threading.Lock()
        self._waiting = RoundRobin()
        self._jobs: dict[str, Job] = {}
        self._idempotent: dict[tuple[str, str], str] = {}
        self._finished_order: list[str] = []
        self._current: Job | None = None
        self._seq = itertools.count((store.max_seq() if store else 0) + 1)
        self._worker: threading.Thread | None = None
        self._stopping = False

    @property
    def limits(self) -> QueueLimits:
        return self._limits

    @property
    def stopping(self) -> bool:
        return self._stopping

    # -- lifecycle -----------------------------------------------------------------------
    def restore(self) -> RestoreReport:
        """Before :meth:`start`: fail jobs a dead process left running, resume its queued ones."""
        if self._store is None:
            return RestoreReport()
        failed, queued = self._store.recover(CRASH_REASON)
        resumed = dropped = 0
        for row in queued:
            request = self._parse_request(row.kind, row.request_json)
            if not row.resumable or request is None or row.kind not in self._handlers:
                reason = NOT_RESUMED if not row.resumable else "not resumed after a restart: its request could not be read back"
                self._store.mark_finished(row.id, JobState.CANCELLED, finished_at=time.time(), error=reason)
                dropped += 1
                continue
            job = self._from_stored(row, request)
            with self._cond:
                self._register(job)
                self._waiting.push(job)
            resumed += 1
        self._store.prune(keep=10_000)
        report = RestoreReport(resumed=resumed, failed_running=len(failed), dropped=dropped)
        if resumed or failed or dropped:
            log.info("job queue restored from %s: %d resumed, %d failed (were running), %d not resumed",
                     self._store.path, resumed, len(failed), dropped)
        return report

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

    # -- submitting ----------------------------------------------------------------------
    def submit(self, request: BaseModel, *, owner: str | None = None, source: str = "internal",
               idempotency_key: str | None = None, keep_outputs: bool = False,
               resumable: bool | None = None) -> Job:
        return self.submit_once(request, owner=owner, source=source, idempotency_key=idempotency_key,
                                keep_outputs=keep_outputs, resumable=resumable)[0]

    def submit_once(self, request: BaseModel, *, owner: str | None = None, source: str = "internal",
                    idempotency_key: str | None = None, keep_outputs: bool = False,
                    resumable: bool | None = None) -> tuple[Job, bool]:
        """Queue ``request``; returns (job, created). With an ``idempotency_key`` already used by
        this owner, returns that earlier job instead (created False), or raises
        IdempotencyConflictError when the earlier request was different."""
        kind = getattr(request, "kind", None)
        if kind not in self._handlers:
            raise ValueError(f"no handler for job kind {kind!r}")
        self._limits.check_request(request)
        request_json = _dump(request)
        request_hash = hashlib.sha256((request_json or repr(request)).encode()).hexdigest()
        if resumable is None:
            resumable = keep_outputs or bool(getattr(request, "save_images", False))
        with self._submit_lock:
            if idempotency_key:
                earlier = self.find_idempotent(owner, idempotency_key)
                if earlier is not None:
                    if earlier.request_hash != request_hash:
                        raise IdempotencyConflictError(
                            "this Idempotency-Key was already used for a different request; use a new key")
                    return earlier, False
            with self._cond:
                self._limits.check_room(len(self._waiting), self._waiting.count(owner), owner)
                seq = next(self._seq)
            job = Job(id=uuid.uuid4().hex, kind=kind, request=request, owner=owner, source=source, seq=seq,
                      idempotency_key=idempotency_key or None, request_hash=request_hash,
                      keep_outputs=keep_outputs, resumable=resumable and request_json is not None)
            if self._store is not None:  # recorded before the worker can see it
                self._store.insert(NewJob(job.id, seq, kind, owner, source, request_json, request_hash,
                                          job.idempotency_key, job.resumable, keep_outputs, job.created_at))
            with self._cond:
                self._register(job)
                self._waiting.push(job)
                position = self._waiting.position(job.id)
                self._cond.notify_all()
        self.events.publish("queued", job.id, owner, kind=kind, state=job.state.value, position=position)
        return job, True

    def _register(self, job: Job) -> None:
        self._jobs[job.id] = job
        if job.idempotency_key:
            self._idempotent[(job.owner or "", job.idempotency_key)] = job.id

    def find_idempotent(self, owner: str | None, key: str) -> Job | None:
        with self._cond:
            job_id = self._idempotent.get((owner or "", key))
            if job_id is not None and job_id in self._jobs:
                return self._jobs[job_id]
        if self._store is not None:
            row = self._store.find_idempotent(owner, key)
            if row is not None:
                return self._from_stored(row, self._parse_request(row.kind, row.request_json))
        return None

    # -- querying ------------------------------------------------------------------------
    def get(self, job_id: str) -> Job | None:
        """A job still held in memory (waiting, running or recently finished)."""
        with self._cond:
            return self._jobs.get(job_id)

    def lookup(self, job_id: str) -> Job | None:
        """Any job: from memory, else rebuilt (finished, without pixels) from the job store."""
        job = self.get(job_id)
        if job is None and self._store is not None:
            row = self._store.get(job_id)
            if row is not None:
                job = self._from_stored(row, self._parse_request(row.kind, row.request_json))
        return job

    def list_jobs(self, *, states: Iterable[JobState] = (), owner: str | None = None, limit: int = 100,
                  before_seq: int | None = None) -> list[Job]:
        """Newest first, optionally filtered by state(s) and owner."""
        states = tuple(states)
        if self._store is not None:
            rows = self._store.list(states=states, owner=owner, limit=limit, before_seq=before_seq)
            with self._cond:
                live = {row.id: self._jobs.get(row.id) for row in rows}
            return [live[row.id] or self._from_stored(row, None) for row in rows]
        with self._cond:
            jobs = sorted(self._jobs.values(), key=lambda j: j.seq, reverse=True)
        return [j for j in jobs if (not states or j.state in states) and (owner is None or j.owner == owner)
                and (before_seq is None or j.seq < before_seq)][:limit]

    def jobs(self) -> list[Job]:
        with self._cond:
            return sorted(self._jobs.values(), key=lambda j: j.seq)

    def current(self) -> Job | None:
        with self._cond:
            return self._current

    def waiting_count(self, owner: str | None = None) -> int:
        with self._cond:
            return len(self._waiting) if owner is None else self._waiting.count(owner)

    def position(self, job_id: str) -> int | None:
        """0 for the running job, 1.. for waiting jobs (round-robin order), None when finished or unknown."""
        with self._cond:
            if self._current is not None and self._current.id == job_id:
                return 0
            return self._waiting.position(job_id)

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        job = self.get(job_id)
        if job is None:
            raise KeyError(job_id)
        job.done.wait(timeout)
        return job

    # -- stopping jobs -------------------------------------------------------------------
    def cancel(self, job_id: str, *, owner: str | None = None) -> bool:
        """Cancel that job: drop it if waiting, stop it if running. False if unknown, finished,
        or (when ``owner`` is given) someone else's."""
        with self._cond:
            job = self._jobs.get(job_id)
            if job is None or job.state.finished or (owner is not None and job.owner != owner):
                return False
            if job.state is JobState.RUNNING:
                job.control.cancel_event.set()
                return True
            self._waiting.remove(job)
        self._complete(job, JobState.CANCELLED, error="cancelled before it started")
        return True

    def interrupt(self, *, owner: str | None = None) -> Job | None:
        """Stop the running job (it keeps what it made so far, as in A1111); with ``owner``,
        only when that owner's job is the one running."""
        with self._cond:
            job = self._current
            if job is not None and (owner is None or job.owner == owner):
                job.control.interrupt_event.set()
                return job
            return None

    def skip(self, *, owner: str | None = None) -> Job | None:
        """Skip the current batch of the running job and go on with the next one."""
        with self._cond:
            job = self._current
            if job is not None and (owner is None or job.owner == owner):
                job.control.skip_event.set()
                return job
            return None

    # -- worker --------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                job = self._waiting.pop()
                assert job is not None
                job.state = JobState.RUNNING
                job.started_at = time.time()
                self._current = job
            if self._store is not None:
                self._store.mark_started(job.id, job.started_at)
            self.events.publish("started", job.id, job.owner, kind=job.kind, state=job.state.value)
            self._execute(job)

    def _execute(self, job: Job) -> None:
        handler = self._handlers[job.kind]
        state, error, result, user_error = JobState.SUCCEEDED, None, None, False
        job.control.listener = lambda: self._progress_event(job)
        try:
            result = handler(job, job.control)
            if job.control.cancel_event.is_set():
                state, error = JobState.CANCELLED, "cancelled while running"
            elif self._stopping and job.control.interrupt_event.is_set():
                state, error = JobState.FAILED, SHUTDOWN_REASON
        except JobFailure as exc:
            state, error, user_error = JobState.FAILED, str(exc), True
        except Exception as exc:  # a bug or an unexpected library error: keep the worker alive
            log.exception("job %s (%s) failed", job.id, job.kind)
            state, error = JobState.FAILED, f"{type(exc).__name__}: {exc}"
        finally:
            job.control.listener = None
        with self._cond:
            job.result = result
            job.user_error = user_error
            self._current = None
        self._complete(job, state, error=error)

    def _progress_event(self, job: Job) -> None:
        now = time.monotonic()
        if now - job.last_event_at < PROGRESS_EVENT_INTERVAL:
            return
        job.last_event_at = now
        snap = job.control.snapshot()
        self.events.publish("progress", job.id, job.owner, progress=round(snap.fraction, 4), step=snap.step,
                            steps=snap.total_steps, job_no=snap.job_no, job_count=snap.job_count,
                            eta_seconds=snap.eta_seconds(), text=snap.text)

    def _complete(self, job: Job, state: JobState, *, error: str | None) -> None:
        """Record the outcome (store first, so a crash right after loses nothing), then signal."""
        meta = None
        if job.result is not None and self._describe is not None:
            try:
                meta = self._describe(job.kind, job.result)
            except Exception:  # noqa: BLE001 - metadata is best effort, the job itself is done
                log.exception("describing the result of job %s failed", job.id)
        with self._cond:
            job.state, job.error, job.result_meta = state, error, meta
            job.finished_at = time.time()
            self._finished_order.append(job.id)
            while len(self._finished_order) > self._keep_finished:
                old = self._jobs.pop(self._finished_order.pop(0), None)
                if old is not None and old.idempotency_key:
                    self._idempotent.pop((old.owner or "", old.idempotency_key), None)
        if self._store is not None:
            self._store.mark_finished(job.id, state, finished_at=job.finished_at, error=error,
                                      user_error=job.user_error, result_meta=meta)
        job.done.set()
        kind = {JobState.SUCCEEDED: "finished", JobState.FAILED: "failed"}.get(state, "cancelled")
        self.events.publish(kind, job.id, job.owner, state=state.value, error=error)
        with self._cond:
            self._cond.notify_all()

    # -- persistence helpers -------------------------------------------------------------
    def _parse_request(self, kind: str, request_json: str | None) -> BaseModel | None:
        model = self._request_types.get(kind)
        if model is None or not request_json:
            return None
        try:
            return model.model_validate_json(request_json)
        except ValueError:
            return None

    @staticmethod
    def _from_stored(row: StoredJob, request: BaseModel | None) -> Job:
        job = Job(id=row.id, kind=row.kind, request=request, owner=row.owner, source=row.source, state=row.state,
                  created_at=row.created_at, started_at=row.started_at, finished_at=row.finished_at,
                  result_meta=row.result_meta, error=row.error, user_error=row.user_error, seq=row.seq,
                  idempotency_key=row.idempotency_key, request_hash=row.request_hash,
                  keep_outputs=row.keep_outputs, resumable=row.resumable)
        if row.state.finished:
            job.done.set()
        return job


def _dump(request: BaseModel) -> str | None:
    try:
        return request.model_dump_json()
    except (ValueError, TypeError):  # a request holding something that is not JSON (never persisted)
        return None
