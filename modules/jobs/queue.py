"""The job queue: the only way to the device.

The UI, the A1111 API and the native API all submit typed requests here. One worker thread
per lane (:mod:`modules.jobs.lanes`: ``device`` for generation and every device job, ``training``
beside it, ...; a wide lane has several, :meth:`JobQueue.set_lane_width`) runs the handler registered
for each job's kind. Waiting jobs are served
round-robin across owners within their lane (:mod:`modules.jobs.fairness`); every job has its own
id, progress, cancel and result, so one client can never stop another's job by accident
(``interrupt()`` stops only the job running in the device lane, as A1111's button does, or the job
named, and can be limited to the caller's own). A kind that yields to another lane is asked to pause
while that lane has work.

With a :class:`~modules.jobs.store.JobStore` every job is recorded in SQLite as it is
submitted, started and finished; :meth:`JobQueue.restore` resumes the queued jobs of a previous
process. With an :class:`~modules.jobs.events.EventBus` every change is published as an event.

The worker never dies of a job: every error around a job and its bookkeeping (the store's
writes, the handler, describing the result, events) is contained; failed store writes are retried
(:mod:`modules.jobs.recording`) while the job still finishes and its waiter is released. Should the
worker loop itself fail, a supervisor logs why and restarts it; after repeated crashes it stops,
:meth:`JobQueue.worker_status` says so and the next submit starts it again. A
:class:`~modules.jobs.disk_space.SpaceGuard` keeps a free-space margin: submits are refused
(:class:`DiskFullError`, HTTP 507) and waiting jobs held back while the disk is full, and a job that
fails for lack of space says so. :meth:`JobQueue.shutdown` stops at the running job's next step:
a resumable job goes back to the queue for the next start, others fail with ``SHUTDOWN_REASON``.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import threading
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Mapping

from pydantic import BaseModel

from modules.jobs.disk_space import SpaceGuard, is_disk_full
from modules.jobs.events import EventBus
from modules.jobs.lanes import DEVICE_LANE, Lane, LanePolicy, Lanes, single_lane
from modules.jobs.limits import QueueLimits
from modules.jobs.model import (CRASH_REASON, REQUEUED_NOTE, SHUTDOWN_REASON, STOPPED_BEFORE_START, Describer,
                                DiskFullError, Handler, IdempotencyConflictError, Job, JobFailure, JobState,
                                LimitExceededError, QueueFullError)
from modules.jobs.progress import JobControl, Progress
from modules.jobs.recording import JobRecorder
from modules.jobs.store import JobStore, NewJob, StoredJob

__all__ = ["DiskFullError", "Handler", "IdempotencyConflictError", "Job", "JobControl", "JobFailure", "JobQueue",
           "JobState", "LimitExceededError", "Progress", "QueueFullError", "RestoreReport", "WorkerStatus"]

log = logging.getLogger(__name__)

PROGRESS_EVENT_INTERVAL = 0.1   # seconds between two progress events of one job
NOT_RESUMED = "not resumed after a restart: its client has gone and its images would not have been saved"
#: how often a worker held back by a full disk looks again, and retries writes that failed
RECHECK_SECONDS = 1.0
#: crashes of the worker loop in a row (no job finishing in between) before the supervisor stops
#: restarting it; the next submit starts it again
MAX_CRASHES_IN_A_ROW = 5
CRASH_BACKOFF_SECONDS = (0.05, 0.2, 0.5, 1.0, 2.0)


@dataclass(frozen=True)
class RestoreReport:
    resumed: int = 0
    failed_running: int = 0
    dropped: int = 0
    interrupted: int = 0   # were running, of kinds that offer to resume them (state ``interrupted``)


@dataclass(frozen=True)
class WorkerStatus:
    """What the progress and queue routes tell clients about the worker."""

    alive: bool                 # the worker thread is running (False before start and after a stop)
    error: str | None = None    # why it last crashed or stopped, if it did
    restarts: int = 0           # times the worker loop was restarted after a crash
    paused: str | None = None   # why waiting jobs are held back (a full disk), if they are
    unrecorded: int = 0         # job updates not yet written to the job store (retried)
    stopping: bool = False      # the server is shutting down
    lanes: tuple[str, ...] = ()  # the lanes whose worker is running

    def describe(self) -> str | None:
        """One line for people, or None when all is well."""
        if self.stopping:
            return "the server is stopping"
        if not self.alive:
            return f"the job worker is not running{f': {self.error}' if self.error else ''}"
        if self.paused:
            return f"jobs are waiting: {self.paused}"
        return None


def _reason(exc: BaseException) -> str:
    """``Type: message`` for a log line or a job's error, even for an exception that cannot print itself."""
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not take the supervisor down with it
        text = "(no message)"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class JobQueue:
    """Round-robin across owners, one worker thread per lane (``lanes``: a kind's lane; default all in one)."""

    def __init__(self, handlers: Mapping[str, Handler], *, max_waiting: int | None = None,
                 keep_finished: int = 500, name: str = "device-0", limits: QueueLimits | None = None,
                 store: JobStore | None = None, events: EventBus | None = None,
                 request_types: Mapping[str, type[BaseModel]] | None = None,
                 describe: Describer | None = None, space: SpaceGuard | None = None,
                 lanes: LanePolicy | None = None) -> None:
        self._handlers: Mapping[str, Handler] = dict(handlers)
        limits = limits or QueueLimits()
        self._limits = replace(limits, max_waiting=max_waiting) if max_waiting is not None else limits
        self._keep_finished = keep_finished
        self._name = name
        self._store = store
        self._recorder = JobRecorder(store)
        store_dir = store.path.parent if store is not None else None
        self._space = space or SpaceGuard(data_dir=store_dir or Path.cwd(),
                                          folders=(store_dir,) if store_dir is not None else ())
        self.events = events or EventBus()
        self._request_types = dict(request_types or {})
        self._describe = describe
        self._cond = threading.Condition()
        self._submit_lock = threading.Lock()
        self._lanes = Lanes()
        self._lane_of: LanePolicy = lanes or single_lane
        self._jobs: dict[str, Job] = {}
        self._idempotent: dict[tuple[str, str], str] = {}
        self._finished_order: list[str] = []
        self._seq = itertools.count((store.max_seq() if store else 0) + 1)
        self._started = False
        self._stopping = False

    @property
    def limits(self) -> QueueLimits:
        return self._limits

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def space(self) -> SpaceGuard:
        return self._space

    def worker_status(self) -> WorkerStatus:
        """All lanes together: alive while every started lane's worker runs; the error of a stopped lane first."""
        with self._cond:
            lanes = [lane for lane in self._lanes if lane.started] or [self._lanes.device]
            errors = [_lane_note(lane, lane.error) for lane in sorted(lanes, key=lambda l: l.alive) if lane.error]
            paused = next((_lane_note(lane, lane.paused) for lane in lanes if lane.paused), None)
            return WorkerStatus(alive=all(lane.alive for lane in lanes), error=errors[0] if errors else None,
                                restarts=sum(lane.restarts for lane in lanes), paused=paused,
                                unrecorded=self._recorder.pending, stopping=self._stopping,
                                lanes=tuple(lane.name for lane in lanes if lane.alive))

    # -- lifecycle -----------------------------------------------------------------------
    def attach_handlers(self, handlers: Mapping[str, Handler], lanes: LanePolicy | None = None) -> None:
        """Before :meth:`restore` and :meth:`start`: the handlers (and the lane policy), when they can only
        be built once the queue exists (the app context that they use holds the queue)."""
        with self._cond:
            if self._started:
                raise RuntimeError("the job queue's handlers are attached before it starts")
            self._handlers = handlers  # kept as given: a live mapping dispatches kinds registered later
            if lanes is not None:
                self._lane_of = lanes

    def set_lane_width(self, lane: str, width: int) -> None:
        """Before :meth:`start`: run ``width`` jobs of ``lane`` at once, one worker thread each (a lane spread
        over several devices: :mod:`modules.distributed`). Fairness, limits and the store are unchanged."""
        with self._cond:
            if self._started:
                raise RuntimeError("a lane's width is set before the queue starts")
            self._lanes.set_width(lane, width)

    def _lane_for(self, job: Job) -> Lane:
        """The lane ``job`` runs in (its kind's), recorded on the job. Under the lock."""
        job.lane = self._lane_of(job.kind).lane or DEVICE_LANE
        return self._lanes.get(job.lane)

    def restore(self, offers_resume: Callable[[str], bool] | None = None) -> RestoreReport:
        """Before :meth:`start`: fail jobs a dead process left running (or, where ``offers_resume(kind)``,
        record them as interrupted, to be offered for resuming), resume its queued ones."""
        if self._store is None:
            return RestoreReport()
        try:
            interrupted = self._store.mark_interrupted(offers_resume) if offers_resume is not None else []
            failed, queued = self._store.recover(CRASH_REASON)
        except Exception as exc:
            if not is_disk_full(exc):
                raise
            # the studio still starts (submits get 507 until there is room); the jobs stay recorded
            log.error("could not restore the job queue (%s); its jobs are restored at a start with free space",
                      self._space.explain(exc, folder=self._store.path.parent))
            return RestoreReport()
        resumed = dropped = 0
        for row in queued:
            request = self._parse_request(row.kind, row.request_json)
            if not row.resumable or request is None or row.kind not in self._handlers:
                reason = NOT_RESUMED if not row.resumable else "not resumed after a restart: its request could not be read back"
                self._recorder.write("outcome", row.id, lambda store, job_id=row.id, why=reason: store.mark_finished(
                    job_id, JobState.CANCELLED, finished_at=time.time(), error=why))
                dropped += 1
                continue
            job = self._from_stored(row, request)
            with self._cond:
                self._register(job)
                self._lane_for(job).waiting.push(job)
            resumed += 1
        try:
            self._store.prune(keep=10_000)
        except Exception:  # noqa: BLE001 - forgetting old jobs can wait for the next start
            log.warning("could not prune old jobs from %s", self._store.path, exc_info=True)
        report = RestoreReport(resumed=resumed, failed_running=len(failed), dropped=dropped,
                               interrupted=len(interrupted))
        if resumed or failed or dropped or interrupted:
            log.info("job queue restored from %s: %d resumed, %d failed (were running), %d interrupted (offered "
                     "to resume), %d not resumed", self._store.path, resumed, len(failed), len(interrupted), dropped)
        return report

    def start(self) -> None:
        with self._cond:
            self._started = True
            for lane in self._lanes:
                self._start_worker_locked(lane)

    def _start_worker_locked(self, lane: Lane) -> None:
        if not self._started or self._stopping or lane.alive:
            return
        base = f"atelier-{self._name}" if lane.name == DEVICE_LANE else f"atelier-{self._name}-{lane.name}"
        for slot in range(lane.width):
            worker = lane.workers.get(slot)
            if worker is not None and worker.is_alive():
                continue
            name = base if slot == 0 else f"{base}-{slot}"
            worker = lane.workers[slot] = threading.Thread(target=self._supervise, args=(lane, slot), name=name,
                                                           daemon=True)
            worker.start()

    def _ensure_worker(self) -> None:
        """The liveness check (on every submit): a lane worker that ended is started again, and why is logged."""
        with self._cond:
            if not self._started or self._stopping:
                return
            for lane in self._lanes:
                if not lane.started or lane.alive:
                    continue
                log.error("the job worker %s had stopped (%s); starting it again", self._worker_name(lane),
                          lane.error or "no reason recorded")
                lane.restarts += 1
                lane.crashes_in_a_row = 0
                self._start_worker_locked(lane)

    def _worker_name(self, lane: Lane) -> str:
        return self._name if lane.name == DEVICE_LANE else f"{self._name} ({lane.name} lane)"

    def begin_shutdown(self) -> None:
        """Stop taking jobs and interrupt the running one at its next step; returns at once (safe to
        call from a signal handler: the server calls it the moment a stop is requested)."""
        with self._cond:
            self._stopping = True
            for job in self._lanes.running():
                job.control.interrupt_event.set()
            self._cond.notify_all()

    def shutdown(self, timeout: float | None = 5.0) -> None:
        """Stop the worker: the running job is interrupted at its next step and recorded as interrupted
        (queued again when resumable), waiting jobs stay queued for the next start (or are cancelled
        when they cannot resume) and everyone waiting on a job is released."""
        self.begin_shutdown()
        deadline = None if timeout is None else time.monotonic() + timeout
        for lane, slot, worker in [(lane, slot, worker) for lane in self._lanes  # all stop together: each
                                   for slot, worker in list(lane.workers.items())]:  # was interrupted above
            if worker is threading.current_thread():
                continue
            worker.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if worker.is_alive():
                log.warning("the running job did not stop within %s s; recording it as interrupted", timeout)
                with self._cond:
                    job = lane.running_jobs.get(slot)
                if job is not None:
                    error = f"{SHUTDOWN_REASON}; {REQUEUED_NOTE}" if job.resumable else SHUTDOWN_REASON
                    self._complete(job, JobState.FAILED, error=error, requeue=job.resumable)
        self._release_waiting()
        self._recorder.flush()

    def _release_waiting(self) -> None:
        """At shutdown: nobody waits forever on a job that will not run in this process."""
        with self._cond:
            waiting = []
            for lane in self._lanes:
                while (job := lane.waiting.pop()) is not None:
                    waiting.append(job)
        for job in waiting:
            if job.resumable:  # stays queued in the store: the next start runs it
                self._complete(job, JobState.FAILED, error=f"{STOPPED_BEFORE_START}; {REQUEUED_NOTE}",
                               requeue=True, record=False)
            else:
                self._complete(job, JobState.CANCELLED, error=STOPPED_BEFORE_START)

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
        IdempotencyConflictError when the earlier request was different. Raises DiskFullError when
        less than the free-space margin is left (or the job store cannot write for lack of space)."""
        self._ensure_worker()
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
                self._limits.check_room(self._lanes.waiting(), self._lanes.waiting(owner), owner)
                seq = next(self._seq)
            self._space.check()
            job = Job(id=uuid.uuid4().hex, kind=kind, request=request, owner=owner, source=source, seq=seq,
                      idempotency_key=idempotency_key or None, request_hash=request_hash,
                      keep_outputs=keep_outputs, resumable=resumable and request_json is not None)
            if self._store is not None:  # recorded before the worker can see it
                self._insert(job, request_json)
            with self._cond:
                self._register(job)
                lane = self._lane_for(job)
                lane.waiting.push(job)
                position = lane.waiting.position(job.id)
                self._start_worker_locked(lane)  # a lane's first job starts its worker
                self._lanes.update_yields(self._lane_of)
                self._cond.notify_all()
                stopping = self._stopping
        self._publish("queued", job, kind=kind, state=job.state.value, position=position)
        if stopping:  # recorded for the next start; nobody waits for it in this process
            self._release_waiting()
        return job, True

    def _insert(self, job: Job, request_json: str | None) -> None:
        """Record a new job; a write refused for lack of space becomes the 507 DiskFullError."""
        assert self._store is not None
        try:
            self._store.insert(NewJob(job.id, job.seq, job.kind, job.owner, job.source, request_json,
                                      job.request_hash, job.idempotency_key, job.resumable, job.keep_outputs,
                                      job.created_at))
        except Exception as exc:
            if is_disk_full(exc):
                raise self._space.explain(exc, folder=self._store.path.parent) from None
            raise

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

    def current(self, lane: str = DEVICE_LANE) -> Job | None:
        """The job running in ``lane`` (the device lane: what A1111's progress shows)."""
        with self._cond:
            return self._lanes.get(lane).current

    def running(self) -> list[Job]:
        """The jobs running now, one per busy lane (the device lane's first)."""
        with self._cond:
            return self._lanes.running()

    def waiting_count(self, owner: str | None = None) -> int:
        """Jobs waiting in all lanes (``owner``'s only, when given)."""
        with self._cond:
            return self._lanes.waiting(owner)

    def position(self, job_id: str) -> int | None:
        """0 for a running job, 1.. for waiting jobs (round-robin order within its lane), None when finished
        or unknown."""
        with self._cond:
            return self._lanes.position(job_id)

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
            lane = self._lanes.get(job.lane)
            if job.state is JobState.RUNNING:
                if job not in lane.running_jobs.values():  # its handler has returned: the outcome is decided
                    return False
                job.control.cancel_event.set()
                return True
            lane.waiting.remove(job)
            self._lanes.update_yields(self._lane_of)
        self._complete(job, JobState.CANCELLED, error="cancelled before it started")
        return True

    def interrupt(self, *, owner: str | None = None, job_id: str | None = None) -> Job | None:
        """Stop the job running in the device lane (it keeps what it made so far, as in A1111), or the
        running job ``job_id`` in whichever lane; with ``owner``, only when it is that owner's job."""
        with self._cond:
            job = self._target(owner, job_id)
            if job is not None:
                job.control.interrupt_event.set()
            return job

    def skip(self, *, owner: str | None = None, job_id: str | None = None) -> Job | None:
        """Skip the current batch of the device lane's running job (or of ``job_id``) and go on with the next."""
        with self._cond:
            job = self._target(owner, job_id)
            if job is not None:
                job.control.skip_event.set()
            return job

    def _target(self, owner: str | None, job_id: str | None) -> Job | None:
        """What interrupt and skip address. Under the lock."""
        job = self._lanes.device.current if job_id is None else self._lanes.running_job(job_id)
        return job if job is not None and (owner is None or job.owner == owner) else None

    # -- worker --------------------------------------------------------------------------
    def _supervise(self, lane: Lane, slot: int = 0) -> None:
        """A lane's worker thread: runs the loop; an exception that escapes it is logged, the job it hit is
        failed (its waiter released) and the loop restarted, until it crashes too often in a row."""
        name = self._worker_name(lane)
        while True:
            try:
                self._loop(lane, slot)
                self._release_waiting()  # stopping: release the waiters of jobs that will not run here
                return
            except BaseException as exc:  # noqa: BLE001 - the supervisor's whole job: nothing ends the worker unseen
                reason = _reason(exc)
                self._abandon_current(lane, slot, f"the job worker crashed: {reason}")
                with self._cond:
                    lane.error = f"crashed: {reason}"
                    lane.crashes_in_a_row += 1
                    crashes = lane.crashes_in_a_row
                    if self._stopping:
                        return
                    if crashes >= MAX_CRASHES_IN_A_ROW:
                        lane.error = f"stopped after {crashes} crashes in a row, the last: {reason}"
                        log.critical("the job worker %s crashed %d times in a row (%s); it stays stopped until "
                                     "the next submit", name, crashes, reason, exc_info=exc)
                        return
                    lane.restarts += 1
                    log.error("the job worker %s crashed (%s); restarting it", name, reason, exc_info=exc)
                    self._cond.wait(CRASH_BACKOFF_SECONDS[min(crashes, len(CRASH_BACKOFF_SECONDS)) - 1])

    def _loop(self, lane: Lane, slot: int) -> None:
        while not self._stopping:
            if self._recorder.pending:
                self._recorder.flush()
            job = self._take_job(lane, slot)
            if job is not None:
                self._run_job(job, lane, slot)
                with self._cond:
                    lane.crashes_in_a_row = 0

    def _take_job(self, lane: Lane, slot: int = 0) -> Job | None:
        """The lane's next job, marked running; None when there is none yet (or the disk is too full)."""
        with self._cond:
            if not lane.waiting and not self._stopping:
                self._cond.wait(RECHECK_SECONDS if self._recorder.pending else None)
            if self._stopping or not lane.waiting:
                return None
        shortage = self._space.shortfall()  # outside the lock: it measures the disk
        with self._cond:
            if shortage is not None:
                if lane.paused != str(shortage):
                    log.warning("jobs are held back: %s", shortage)
                lane.paused = str(shortage)
                if not self._stopping:
                    self._cond.wait(RECHECK_SECONDS)
                return None
            if lane.paused is not None:
                log.info("free space is back; jobs run again")
                lane.paused = None
            if self._stopping:
                return None
            job = lane.waiting.pop()
            if job is None:
                return None
            job.state = JobState.RUNNING
            job.started_at = time.time()
            lane.running_jobs[slot] = job
            self._lanes.update_yields(self._lane_of)
            return job

    def _run_job(self, job: Job, lane: Lane, slot: int = 0) -> None:
        started_at = job.started_at or time.time()
        self._recorder.write("start", job.id, lambda store: store.mark_started(job.id, started_at))
        self._publish("started", job, kind=job.kind, state=job.state.value)
        self._execute(job, lane, slot)

    def _execute(self, job: Job, lane: Lane, slot: int = 0) -> None:
        handler = self._handlers[job.kind]
        state, error, result, user_error, requeue = JobState.SUCCEEDED, None, None, False, False
        job.control.listener = lambda: self._progress_event(job)
        try:
            result = handler(job, job.control)
            if job.control.cancel_event.is_set():
                state, error = JobState.CANCELLED, "cancelled while running"
            elif self._stopping and job.control.interrupt_event.is_set():
                state, error, requeue = JobState.FAILED, SHUTDOWN_REASON, job.resumable
                if requeue:
                    error = f"{SHUTDOWN_REASON}; {REQUEUED_NOTE}"
        except JobFailure as exc:
            state, error, user_error = JobState.FAILED, str(exc), True
        except Exception as exc:  # a bug, a full disk or an unexpected library error: keep the worker alive
            state = JobState.FAILED
            if is_disk_full(exc):
                error = str(self._space.explain(exc))
                job.out_of_space = True
                log.warning("job %s (%s) failed: %s", job.id, job.kind, error)
            else:
                log.exception("job %s (%s) failed", job.id, job.kind)
                error = _reason(exc)
        finally:
            job.control.listener = None
        with self._cond:
            # decided under the lock cancel() takes: a cancel answered True always ends the job cancelled
            if state is JobState.SUCCEEDED and job.control.cancel_event.is_set():
                state, error = JobState.CANCELLED, "cancelled while running"
            job.result = result
            job.user_error = user_error
            lane.running_jobs.pop(slot, None)
            job.control.release_pause()
            self._lanes.update_yields(self._lane_of)
        self._complete(job, state, error=error, requeue=requeue)

    def _abandon_current(self, lane: Lane, slot: int, error: str) -> None:
        """After a worker crash: the job it was running fails with ``error`` (its waiter is released)."""
        with self._cond:
            job = lane.running_jobs.pop(slot, None)
            self._lanes.update_yields(self._lane_of)
        if job is not None and not job.done.is_set():
            self._complete(job, JobState.FAILED, error=error)

    def _progress_event(self, job: Job) -> None:
        now = time.monotonic()
        if now - job.last_event_at < PROGRESS_EVENT_INTERVAL:
            return
        job.last_event_at = now
        snap = job.control.snapshot()
        self._publish("progress", job, progress=round(snap.fraction, 4), step=snap.step, steps=snap.total_steps,
                      job_no=snap.job_no, job_count=snap.job_count, eta_seconds=snap.eta_seconds(), text=snap.text)

    def _publish(self, type_: str, job: Job, **data: object) -> None:
        try:
            self.events.publish(type_, job.id, job.owner, **data)
        except Exception:  # noqa: BLE001 - events are a view of the job, never a reason for it to fail
            log.exception("publishing the %s event of job %s failed", type_, job.id)

    def _complete(self, job: Job, state: JobState, *, error: str | None, requeue: bool = False,
                  record: bool = True) -> None:
        """Record the outcome (store first, so a crash right after loses nothing), then signal. Never
        raises; the waiter is released even when recording fails. ``requeue``: the store gets the job
        back as queued (a resumable job stopped by a shutdown) while the waiter learns it stopped."""
        try:
            with self._cond:
                if job.state.finished:  # already completed (a shutdown that gave up waiting, then the worker)
                    return
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
            if record and self._store is not None:
                if requeue:
                    self._recorder.write("requeue", job.id, lambda store: store.requeue(job.id))
                else:
                    finished_at, user_error = job.finished_at, job.user_error
                    self._recorder.write("outcome", job.id, lambda store: store.mark_finished(
                        job.id, state, finished_at=finished_at, error=error, user_error=user_error,
                        result_meta=meta))
        finally:
            job.done.set()
        kind = {JobState.SUCCEEDED: "finished", JobState.FAILED: "failed"}.get(state, "cancelled")
        self._publish(kind, job, state=state.value, error=error)
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


def _lane_note(lane: Lane, text: str) -> str:
    """A lane's error or pause for the status line (the device lane's as it always read)."""
    return text if lane.name == DEVICE_LANE else f"{lane.name} lane: {text}"


def _dump(request: BaseModel) -> str | None:
    try:
        return request.model_dump_json()
    except (ValueError, TypeError):  # a request holding something that is not JSON (never persisted)
        return None
