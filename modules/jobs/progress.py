"""Per-job progress and control, handed to a job handler by the queue.

A handler reports steps through :class:`JobControl` and polls it to learn whether the user
cancelled, interrupted or skipped. Nothing here is global: every job has its own control.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class Progress:
    """A snapshot-friendly record of how far a job is."""

    job_no: int = 0            # current batch (n_iter index)
    job_count: int = 1         # number of batches
    step: int = 0              # sampling step within the batch
    total_steps: int = 0
    text: str = ""
    started_at: float | None = None
    preview_id: int = 0

    @property
    def fraction(self) -> float:
        if self.job_count <= 0:
            return 0.0
        within = self.step / self.total_steps if self.total_steps else 0.0
        return min(1.0, (self.job_no + within) / self.job_count)

    def eta_seconds(self, now: float | None = None) -> float | None:
        if self.started_at is None:
            return None
        frac = self.fraction
        if frac <= 0.0:
            return None
        elapsed = (now or time.monotonic()) - self.started_at
        return max(0.0, elapsed / frac - elapsed)


@dataclass
class JobControl:
    """What a running handler sees of its job: progress out, stop signals in."""

    progress: Progress = field(default_factory=Progress)
    cancel_event: threading.Event = field(default_factory=threading.Event)
    interrupt_event: threading.Event = field(default_factory=threading.Event)
    skip_event: threading.Event = field(default_factory=threading.Event)
    _preview_source: Callable[[], Any] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def begin(self, job_count: int, total_steps: int, text: str = "") -> None:
        with self._lock:
            self.progress.job_count = max(1, job_count)
            self.progress.total_steps = total_steps
            self.progress.job_no = 0
            self.progress.step = 0
            self.progress.text = text
            self.progress.started_at = time.monotonic()

    def begin_batch(self, job_no: int) -> None:
        with self._lock:
            self.progress.job_no = job_no
            self.progress.step = 0
        self.skip_event.clear()

    def step(self, step: int, preview_source: Callable[[], Any] | None = None) -> None:
        """Record that ``step`` sampling steps of the current batch are done."""
        with self._lock:
            self.progress.step = step
            if preview_source is not None:
                self._preview_source = preview_source
                self.progress.preview_id += 1

    def preview(self) -> Any:
        """The latest preview (computed on demand, so unwatched jobs pay nothing)."""
        source = self._preview_source
        return source() if source is not None else None

    @property
    def should_stop(self) -> bool:
        return self.cancel_event.is_set() or self.interrupt_event.is_set()

    @property
    def should_skip_batch(self) -> bool:
        return self.skip_event.is_set()

    def snapshot(self) -> Progress:
        with self._lock:
            return Progress(**{k: getattr(self.progress, k) for k in Progress.__dataclass_fields__})
