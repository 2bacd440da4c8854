"""The studio's view of its Ray actors: which is free, alive, and which checkpoint each last loaded.

:meth:`ActorPool.acquire` gives a job a free live actor, preferring one that already holds the job's
checkpoint (model affinity), then one that holds none; a job coming back after its actor died
(``retry``) goes first. Thread-safe: the device lane's worker threads share it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(eq=False)
class ActorSlot:
    name: str
    handle: Any
    resources: str = ""
    alive: bool = True
    job: str | None = None          # the job it runs now
    checkpoint: str | None = None   # the checkpoint reference of the last job it ran
    died: str | None = None         # why it is dead
    jobs: int = 0                   # jobs it has run for this studio


class NoActorLeft(RuntimeError):
    """Every actor is dead."""


class ActorPool:
    def __init__(self, slots: list[ActorSlot]) -> None:
        self._slots = list(slots)
        self._cond = threading.Condition()
        self._retrying = 0

    @property
    def slots(self) -> list[ActorSlot]:
        with self._cond:
            return list(self._slots)

    def acquire(self, job_id: str, checkpoint: str | None, *, retry: bool = False,
                stop: Callable[[], bool] = lambda: False) -> ActorSlot | None:
        """A free live actor for ``job_id``, marked busy; None when ``stop()`` turns true while waiting.
        Raises :class:`NoActorLeft` when every actor is dead."""
        with self._cond:
            if retry:
                self._retrying += 1
            try:
                while True:
                    alive = [slot for slot in self._slots if slot.alive]
                    if not alive:
                        died = next((slot.died for slot in reversed(self._slots) if slot.died), None)
                        raise NoActorLeft(f"no Ray actor is left{f' (the last died: {died})' if died else ''}")
                    free = [slot for slot in alive if slot.job is None]
                    if free and (retry or not self._retrying):
                        slot = self._choose(free, checkpoint)
                        slot.job = job_id
                        return slot
                    if stop():
                        return None
                    self._cond.wait(0.2)
            finally:
                if retry:
                    self._retrying -= 1

    @staticmethod
    def _choose(free: list[ActorSlot], checkpoint: str | None) -> ActorSlot:
        holding = [slot for slot in free if slot.checkpoint == checkpoint]
        empty = [slot for slot in free if slot.checkpoint is None]
        return (holding or empty or sorted(free, key=lambda slot: slot.jobs))[0]

    def release(self, slot: ActorSlot, checkpoint: str | None) -> None:
        with self._cond:
            slot.job = None
            if slot.alive:
                slot.checkpoint = checkpoint
                slot.jobs += 1
            self._cond.notify_all()

    def add(self, slot: ActorSlot) -> None:
        """A new actor (one started to take a dead one's place) joins the pool."""
        with self._cond:
            self._slots.append(slot)
            self._cond.notify_all()

    def mark_dead(self, slot: ActorSlot, reason: str) -> None:
        with self._cond:
            slot.alive, slot.died, slot.job = False, reason, None
            self._cond.notify_all()
