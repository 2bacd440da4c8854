"""Writing job bookkeeping to the job store without ever stopping the worker.

A write that fails (a full disk, a locked or damaged file) is retried a few times with a short
backoff; what still fails is kept, in order, and written later (:meth:`JobRecorder.flush`, called by
the worker between jobs). The job itself finishes in memory either way and its waiter is released:
the record is bookkeeping, the job's outcome must not depend on it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import Callable, Sequence

from modules.jobs.store import JobStore

log = logging.getLogger(__name__)

Write = Callable[[JobStore], None]

#: seconds slept before each retry of a failed write (so 1 + len(RETRY_DELAYS) tries in all)
RETRY_DELAYS: tuple[float, ...] = (0.05, 0.25, 1.0)
#: the most writes kept for later; beyond, the oldest are dropped (and logged)
MAX_PENDING = 1000


class JobRecorder:
    """Retrying writes to one :class:`JobStore` (or none: then every write is a no-op)."""

    def __init__(self, store: JobStore | None, *, delays: Sequence[float] = RETRY_DELAYS,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._store = store
        self._delays = tuple(delays)
        self._sleep = sleep
        self._lock = threading.Lock()
        self._pending: OrderedDict[tuple[str, str], Write] = OrderedDict()
        self.last_error: str | None = None

    @property
    def pending(self) -> int:
        """How many writes are waiting to be retried."""
        with self._lock:
            return len(self._pending)

    def write(self, what: str, job_id: str, write: Write) -> bool:
        """Write now (after any earlier write of the same job still waiting), retrying with backoff;
        False when every try failed: then the write is kept, in order, for :meth:`flush`."""
        if self._store is None:
            return True
        with self._lock:
            self._pending.pop((job_id, what), None)
            self._pending[(job_id, what)] = write
        for delay in (0.0, *self._delays):
            if delay:
                self._sleep(delay)
            self.flush()
            if not self._waiting_for(job_id):
                return True
        log.error("could not record the %s of job %s in the job store (%s); will retry later",
                  what, job_id, self.last_error)
        self._trim()
        return False

    def flush(self) -> int:
        """Retry every kept write once, oldest first (a job's writes stay in their order: after one
        fails, that job's later writes wait). Returns how many landed."""
        if self._store is None:
            return 0
        with self._lock:
            queued = list(self._pending.items())
        landed, blocked = 0, set()
        for key, write in queued:
            job_id = key[0]
            if job_id in blocked:
                continue
            try:
                write(self._store)
            except Exception as exc:  # noqa: BLE001 - any store failure is kept for later, never raised
                self.last_error = f"{type(exc).__name__}: {exc}"
                blocked.add(job_id)
                continue
            with self._lock:
                if self._pending.get(key) is write:
                    del self._pending[key]
            landed += 1
        if not blocked:
            self.last_error = None
        return landed

    def _waiting_for(self, job_id: str) -> bool:
        with self._lock:
            return any(key[0] == job_id for key in self._pending)

    def _trim(self) -> None:
        with self._lock:
            while len(self._pending) > MAX_PENDING:
                (old_id, old_what), _ = self._pending.popitem(last=False)
                log.error("dropped the unrecorded %s of job %s: too many job updates waiting", old_what, old_id)
