"""The parameters of each user's last generation from the page, kept across restarts.

A1111 restores the last generation's parameters when ↙ (Paste) is pressed with an empty prompt. Atelier
keeps them per queue owner (each logged-in user of the page) in ``<data dir>/last-params.json``:
``{"version": 1, "owners": {owner: {"tab": "txt2img", "at": unix time, "fields": {name: value}}}}``.
Only plain values are kept (text, numbers, booleans, lists of those): images and other uploads are not.
Each submission rewrites the file atomically (temporary file, then rename) under a lock file, so two
submissions at once never lose each other's owner and a crash never leaves half a file.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

log = logging.getLogger(__name__)

FILE_NAME = "last-params.json"
VERSION = 1
#: owners kept (the oldest are dropped past this): the page has a handful of users, not thousands
MAX_OWNERS = 200
#: longest text value kept (characters)
MAX_TEXT = 20_000


@dataclass(frozen=True)
class LastParams:
    """One owner's last submission: the tab it came from and its field values by request field name."""

    tab: str
    at: float
    fields: dict[str, Any]


def _plain(value: Any) -> bool:
    if isinstance(value, str):
        return len(value) <= MAX_TEXT
    if value is None or isinstance(value, (bool, int, float)):
        return True
    if isinstance(value, (list, tuple)):
        return len(value) <= 64 and all(isinstance(v, (str, int, float, bool)) for v in value)
    return False


def plain_fields(values: Mapping[str, Any]) -> dict[str, Any]:
    """The values that can be kept: images, files and other objects are left out."""
    return {str(name): (list(value) if isinstance(value, tuple) else value)
            for name, value in values.items() if _plain(value)}


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("%s is unreadable (%s): starting it afresh", path.name, exc)
        return {}
    owners = data.get("owners") if isinstance(data, dict) else None
    return owners if isinstance(owners, dict) else {}


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``<file>.lock`` where the OS has ``fcntl`` (elsewhere the rename alone)."""
    try:
        import fcntl
    except ImportError:  # Windows: the atomic rename still keeps the file whole
        yield
        return
    with open(path.with_name(path.name + ".lock"), "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def remember(data_dir: Path, owner: str, tab: str, values: Mapping[str, Any], *, now: float | None = None) -> None:
    """Keep ``values`` (request field name -> value) as ``owner``'s last generation from ``tab``."""
    path = Path(data_dir) / FILE_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        owners = _read(path)
        owners[owner] = {"tab": tab, "at": time.time() if now is None else now, "fields": plain_fields(values)}
        if len(owners) > MAX_OWNERS:
            newest = sorted(owners.items(), key=lambda item: float(item[1].get("at", 0) or 0))[-MAX_OWNERS:]
            owners = dict(newest)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump({"version": VERSION, "owners": owners}, handle, ensure_ascii=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def recall(data_dir: Path, owner: str) -> LastParams | None:
    """``owner``'s last generation, or None when there is none (or the file is unreadable)."""
    entry = _read(Path(data_dir) / FILE_NAME).get(owner)
    if not isinstance(entry, dict) or not isinstance(entry.get("fields"), dict):
        return None
    return LastParams(str(entry.get("tab", "")), float(entry.get("at", 0) or 0), plain_fields(entry["fields"]))
