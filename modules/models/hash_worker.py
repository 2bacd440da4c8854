"""Hashes in the background: every model file's SHA-256 (AutoV2 is its first 10 hex) and, for LoRAs, kohya's
addnet hash, computed one file at a time on a low-priority thread and stored in the :class:`HashCache`.

Started after the port opens (``modules/server.py``) and by the Models tab's "Hash all" button; never on the
start-up path, never holding a lock a load or a request needs (the cache's own lock is held only while an
entry is stored). A file hashed already (same size and mtime) is skipped at once. ``/sdapi/v1/sd-models`` and
the listings read the cache, so hashes appear there as they are known.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

if TYPE_CHECKING:
    from modules.models.hashing import HashCache
    from modules.models.library import ModelLibrary

log = logging.getLogger(__name__)

#: (file, also the addnet hash)
HashTarget = tuple[Path, bool]


@dataclass
class HashProgress:
    """Where the background hashing stands (a snapshot)."""

    running: bool = False
    done: int = 0
    total: int = 0
    current: str = ""
    computed: int = 0
    errors: list[str] = field(default_factory=list)
    started_at: float | None = None
    finished_at: float | None = None

    def as_dict(self) -> dict[str, object]:
        return {"running": self.running, "done": self.done, "total": self.total, "current": self.current,
                "computed": self.computed, "errors": list(self.errors), "started_at": self.started_at,
                "finished_at": self.finished_at}


class HashWorker:
    """One background thread at a time hashing the files ``targets()`` names (owned by the app context)."""

    def __init__(self, hashes: "HashCache", targets: Callable[[], Iterable[HashTarget]], *,
                 shown: Callable[[Path], str] = lambda p: p.name, nice: int = 10) -> None:
        self._hashes = hashes
        self._targets = targets
        self._shown = shown
        self._nice = nice
        self._lock = threading.Lock()
        self._progress = HashProgress()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def progress(self) -> HashProgress:
        with self._lock:
            p = self._progress
            return HashProgress(p.running, p.done, p.total, p.current, p.computed, list(p.errors), p.started_at,
                                p.finished_at)

    def start(self) -> bool:
        """Start hashing every target not hashed yet; False when a run is going on already."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return False
            self._stop.clear()
            self._progress = HashProgress(running=True, started_at=time.time())
            self._thread = threading.Thread(target=self._run, name="atelier-hashing", daemon=True)
            self._thread.start()
            return True

    def stop(self) -> None:
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the current run; True when none is running any more."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def _lower_priority(self) -> None:
        try:  # Linux: a thread's nice value is its own (setpriority on the thread id)
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self._nice)
        except (AttributeError, OSError):
            pass

    def _run(self) -> None:
        self._lower_priority()
        try:
            targets = list(dict.fromkeys(self._targets()))
        except Exception as exc:  # noqa: BLE001 - listing failed: say so in the progress, never raise in a thread
            targets = []
            with self._lock:
                self._progress.errors.append(f"listing failed: {exc}")
        with self._lock:
            self._progress.total = len(targets)
        for path, addnet in targets:
            if self._stop.is_set():
                break
            with self._lock:
                self._progress.current = self._shown(path)
            try:
                fresh = self._hashes.cached_sha256(path) is None or (
                    addnet and self._hashes.cached_addnet_hash(path) is None)
                self._hashes.sha256(path)
                if addnet:
                    self._hashes.addnet_hash(path)
            except (OSError, ValueError) as exc:
                log.warning("could not hash %s: %s", path, exc)
                with self._lock:
                    self._progress.errors.append(f"{self._shown(path)}: {exc.__class__.__name__}")
                fresh = False
            with self._lock:
                self._progress.done += 1
                self._progress.computed += int(fresh)
        with self._lock:
            self._progress.running = False
            self._progress.current = ""
            self._progress.finished_at = time.time()


def library_targets(library: "ModelLibrary") -> Callable[[], list[HashTarget]]:
    """Every model file of every kind the library lists (folders have no single-file hash), checkpoints first."""
    from modules.models.library import ADDNET_KINDS, LIBRARY_KINDS

    def targets() -> list[HashTarget]:
        out: list[HashTarget] = []
        for kind in LIBRARY_KINDS:
            for entry in library.entries(kind):
                if not entry.is_folder:
                    out.append((entry.path, kind in ADDNET_KINDS))
        return out

    return targets
