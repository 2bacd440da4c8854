"""Per-job progress and control, handed to a job handler by the queue.

A handler reports steps through :class:`JobControl` and polls it to learn whether the user
cancelled, interrupted or skipped, and (for a kind that yields to another lane,
:mod:`modules.jobs.lanes`) whether to pause. Nothing here is global: every job has its own control.
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
    #: set by the queue while a lane this job yields to has work: pause at the next step (:meth:`pause_point`)
    pause_event: threading.Event = field(default_factory=threading.Event)
    pause_reason: str = ""
    #: True while the handler waits in :meth:`pause_point`
    paused: bool = False
    _pause_cond: threading.Condition = field(default_factory=threading.Condition)
    _preview_source: Callable[[], Any] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    #: called (outside the lock) after every progress change; the queue turns it into events
    listener: Callable[[], None] | None = None
    _preview_cache: tuple[int, Any] | None = None
    _preview_png: tuple[int, bytes] | None = None
    _preview_busy: bool = False

    def _changed(self) -> None:
        listener = self.listener
        if listener is not None:
            listener()

    def begin(self, job_count: int, total_steps: int, text: str = "") -> None:
        with self._lock:
            self.progress.job_count = max(1, job_count)
            self.progress.total_steps = total_steps
            self.progress.job_no = 0
            self.progress.step = 0
            self.progress.text = text
            self.progress.started_at = time.monotonic()
        self._changed()

    def begin_batch(self, job_no: int) -> None:
        with self._lock:
            self.progress.job_no = job_no
            self.progress.step = 0
        self.skip_event.clear()
        self._changed()

    def step(self, step: int, preview_source: Callable[[], Any] | None = None) -> None:
        """Record that ``step`` sampling steps of the current batch are done."""
        with self._lock:
            self.progress.step = step
            if preview_source is not None:
                self._preview_source = preview_source
                self.progress.preview_id += 1
        self._changed()

    def preview(self) -> Any:
        """The latest preview (computed on demand, so unwatched jobs pay nothing; once per step)."""
        with self._lock:
            source, preview_id, cached = self._preview_source, self.progress.preview_id, self._preview_cache
        if source is None:
            return None
        if cached is not None and cached[0] == preview_id:
            return cached[1]
        image = source()
        with self._lock:
            self._preview_cache = (preview_id, image)
        return image

    def cached_preview_png(self) -> tuple[bytes | None, bool]:
        """(the last encoded preview or None, whether a newer preview can be made) without computing
        anything: for polls that must answer at once (``/sdapi/v1/progress``)."""
        with self._lock:
            preview_id, cached = self.progress.preview_id, self._preview_png
        if cached is None:
            return None, preview_id > 0
        return cached[1], cached[0] != preview_id

    def preview_png(self) -> bytes | None:
        """The latest preview as PNG bytes (encoded once per preview), or None."""
        from modules.images.codec import encode_png_bytes

        with self._lock:
            preview_id, cached = self.progress.preview_id, self._preview_png
            if cached is not None and cached[0] == preview_id:
                return cached[1]
            if self._preview_busy:  # another thread is making it: answer with the last one
                return cached[1] if cached is not None else None
            self._preview_busy = True
        try:
            image = self.preview()
            if image is None:
                return None
            data = encode_png_bytes(image, None)
            with self._lock:
                self._preview_png = (preview_id, data)
            return data
        finally:
            with self._lock:
                self._preview_busy = False

    # -- yielding to another lane ------------------------------------------------------------
    def request_pause(self, reason: str = "") -> None:
        """The queue asks the job to pause at its next step (another lane needs the device)."""
        with self._pause_cond:
            self.pause_reason = reason
            self.pause_event.set()

    def release_pause(self) -> None:
        """The queue lets a paused job go on."""
        with self._pause_cond:
            if not self.pause_event.is_set():
                return
            self.pause_event.clear()
            self.pause_reason = ""
            self._pause_cond.notify_all()

    @property
    def should_pause(self) -> bool:
        return self.pause_event.is_set()

    def pause_point(self, poll: float = 0.05) -> bool:
        """Called by a yielding handler between steps: while a pause is asked, wait until it is released or
        the job is stopped (cancel, interrupt, shutdown); returns whether it paused. The progress text says
        why it waits, so a client sees a paused job, not a stuck one."""
        if not self.pause_event.is_set() or self.should_stop:
            return False
        with self._lock:
            text, self.progress.text = self.progress.text, f"paused: {self.pause_reason or 'another lane has work'}"
        self.paused = True
        self._changed()
        try:
            with self._pause_cond:
                while self.pause_event.is_set() and not self.should_stop:
                    self._pause_cond.wait(poll)  # polled too: stop signals are plain events
        finally:
            self.paused = False
            with self._lock:
                self.progress.text = text
            self._changed()
        return True

    @property
    def should_stop(self) -> bool:
        return self.cancel_event.is_set() or self.interrupt_event.is_set()

    @property
    def should_skip_batch(self) -> bool:
        return self.skip_event.is_set()

    def snapshot(self) -> Progress:
        with self._lock:
            return Progress(**{k: getattr(self.progress, k) for k in Progress.__dataclass_fields__})
