"""Push events about jobs: queued, started, progress, finished, failed, cancelled.

The queue publishes from its own threads; subscribers (the SSE routes) hand the event to their
event loop. A subscriber that falls behind loses its oldest events, never blocks the worker.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

log = logging.getLogger(__name__)

EVENT_TYPES = ("queued", "started", "progress", "finished", "failed", "cancelled")


@dataclass(frozen=True)
class JobEvent:
    id: int
    type: str
    job_id: str
    owner: str | None
    data: dict[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.type, "job_id": self.job_id, "at": self.at, **self.data}


Deliver = Callable[[JobEvent], None]


@dataclass(frozen=True)
class _Subscriber:
    deliver: Deliver
    job_id: str | None
    owner: str | None
    everyone: bool

    def wants(self, event: JobEvent) -> bool:
        if self.job_id is not None and event.job_id != self.job_id:
            return False
        return self.everyone or event.owner == self.owner


class EventBus:
    """Thread-safe publish/subscribe of :class:`JobEvent` (no history kept)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: dict[int, _Subscriber] = {}
        self._ids = itertools.count(1)
        self._event_ids = itertools.count(1)

    def subscribe(self, deliver: Deliver, *, job_id: str | None = None, owner: str | None = None,
                  everyone: bool = True) -> int:
        """Call ``deliver`` for each matching event (from the publishing thread; keep it quick)."""
        with self._lock:
            token = next(self._ids)
            self._subscribers[token] = _Subscriber(deliver, job_id, owner, everyone)
        return token

    def unsubscribe(self, token: int) -> None:
        with self._lock:
            self._subscribers.pop(token, None)

    def subscriber_count(self) -> int:
        with self._lock:
            return len(self._subscribers)

    def publish(self, type_: str, job_id: str, owner: str | None, **data: Any) -> JobEvent:
        with self._lock:
            event = JobEvent(next(self._event_ids), type_, job_id, owner, data)
            targets = [(t, s) for t, s in self._subscribers.items() if s.wants(event)]
        for token, sub in targets:
            try:
                sub.deliver(event)
            except Exception:  # a closed event loop, a broken consumer: drop that subscriber
                log.debug("dropping event subscriber %s", token, exc_info=True)
                self.unsubscribe(token)
        return event
