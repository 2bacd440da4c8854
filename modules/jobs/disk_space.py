"""Free disk space: the margin the queue keeps, and telling a full disk apart from other failures.

A disk that fills while the studio runs must not look like a bug. Every write that fails for lack of
space (an image save's ``OSError`` ENOSPC, SQLite's "database or disk is full", the job store's own
typed error) is recognised by :func:`is_disk_full` and explained by :class:`SpaceGuard` as one line
that names the folder (relative to the data dir), the space free and the space needed. The same
guard keeps a margin: the queue refuses submits and holds jobs back while less than
``min_free_space_mb`` is free, instead of starting work that cannot be saved.
"""

from __future__ import annotations

import errno
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from modules.jobs.model import DiskFullError

__all__ = ["DiskFullError", "SpaceGuard", "free_bytes", "is_disk_full", "space_message"]

MB = 1024 * 1024
_FULL_ERRNOS = frozenset(e for e in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if e is not None)
_FULL_TEXT = ("disk is full", "no space left")


def _is_store_full(exc: BaseException) -> bool:
    """The job store's typed disk-full error, once it exists (looked up, not required)."""
    from modules.jobs import store

    full = getattr(store, "JobStoreFullError", None)
    return isinstance(full, type) and isinstance(exc, full)


def _one_is_full(exc: BaseException) -> bool:
    if isinstance(exc, DiskFullError) or _is_store_full(exc):
        return True
    if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
        return True
    if isinstance(exc, sqlite3.Error):
        if getattr(exc, "sqlite_errorcode", None) == getattr(sqlite3, "SQLITE_FULL", 13):
            return True
        return any(text in str(exc).lower() for text in _FULL_TEXT)
    return False


def is_disk_full(exc: BaseException | None) -> bool:
    """True when ``exc`` (or an exception it was raised from or during) is a write refused for lack of space."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if _one_is_full(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def free_bytes(path: Path) -> int | None:
    """Free bytes (for an unprivileged user) on the device holding ``path`` or its nearest existing
    parent; None when that cannot be measured (then nothing is refused on its account)."""
    path = Path(path)
    for candidate in (path, *path.parents):
        if candidate.exists():
            try:
                return shutil.disk_usage(candidate).free
            except OSError:
                return None
    return None


def _shown(folder: Path, data_dir: Path) -> str:
    try:
        relative = folder.resolve().relative_to(data_dir.resolve())
    except (ValueError, OSError):
        return str(folder)
    return str(relative) if str(relative) != "." else "the data dir"


def space_message(folder: Path, data_dir: Path, free: int | None, need_mb: int) -> str:
    """The one line a user sees: "no space left on the device holding outputs: free 3 MB, need 64 MB"."""
    free_text = f"{free // MB} MB" if free is not None else "unknown"
    return f"no space left on the device holding {_shown(folder, data_dir)}: free {free_text}, need {need_mb} MB"


@dataclass(frozen=True)
class SpaceGuard:
    """Keeps ``min_free_mb()`` free on the devices holding ``folders`` (the most written first) and
    explains disk-full errors. ``min_free_mb`` is read at each check, so a changed setting applies
    at once; 0 turns the margin off (a full disk is still explained)."""

    data_dir: Path
    folders: tuple[Path, ...]
    min_free_mb: Callable[[], int] = lambda: 0
    measure: Callable[[Path], int | None] = free_bytes

    def margin_mb(self) -> int:
        try:
            return max(0, int(self.min_free_mb()))
        except Exception:  # noqa: BLE001 - an unreadable setting turns the margin off rather than stop the queue
            return 0

    def shortfall(self) -> DiskFullError | None:
        """The first folder with less than the margin free, as the error to raise; None when all have room."""
        need = self.margin_mb()
        if need <= 0:
            return None
        for folder in self.folders:
            free = self.measure(folder)
            if free is not None and free < need * MB:
                return DiskFullError(space_message(folder, self.data_dir, free, need))
        return None

    def check(self) -> None:
        """Raise :class:`DiskFullError` when a watched folder has less than the margin free."""
        shortage = self.shortfall()
        if shortage is not None:
            raise shortage

    def explain(self, exc: BaseException, *, folder: Path | None = None) -> DiskFullError:
        """A disk-full failure as a :class:`DiskFullError` naming ``folder`` (default: the written file's
        folder when the error says, else the watched folder with the least space free)."""
        if isinstance(exc, DiskFullError):
            return exc
        where = folder or self._folder_of(exc)
        free = self.measure(where)
        return DiskFullError(space_message(where, self.data_dir, free, max(1, self.margin_mb())))

    def _folder_of(self, exc: BaseException) -> Path:
        filename = getattr(exc, "filename", None)
        if isinstance(filename, (str, Path)) and str(filename):
            return Path(filename).parent
        measured = [(self.measure(f), i, f) for i, f in enumerate(self.folders)]
        known = [(free, i, f) for free, i, f in measured if free is not None]
        if known:
            return min(known)[2]
        return self.folders[0] if self.folders else self.data_dir
