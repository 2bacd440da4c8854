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

    @property
    def should_stop(self) -> bool:
        return self.cancel_event.is_set() or self.interrupt_event.is_set()

    @property
    def should_skip_batch(self) -> bool:
        return self.skip_event.is_set()

    def snapshot(self) -> Progress:
        with self._lock:
            return Progress(**{k: getattr(self.progress, k) for k in Progress.__dataclass_fields__})
