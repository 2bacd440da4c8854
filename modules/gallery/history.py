"""Every image under ``outputs/``, searchable by prompt, model and date, deletable to a trash folder.

The index reads each image's infotext (the PNG ``parameters`` chunk, or EXIF ``UserComment``) once and
keeps it until the file changes, so a search over thousands of images is a scan of ``stat`` calls
and string matches. Deleting moves the file to ``outputs/.trash/`` under the same relative path
(a name already there gets a numeric suffix), so nothing is lost by a wrong click.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Iterable

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
TRASH = ".trash"
_DATE_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class HistoryError(ValueError):
    """A history operation that cannot be done (message for the user)."""


@dataclass(frozen=True)
class HistoryEntry:
    path: Path
    relative: str          # relative to outputs/, with "/" separators
    kind: str              # the first folder: txt2img-images, img2img-images, extras-images, ...
    day: date
    mtime: float
    infotext: str = ""
    prompt: str = ""
    model: str = ""
    params: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def seed(self) -> str:
        return self.params.get("Seed", "")


def read_image_infotext(path: Path) -> str:
    """The infotext of an image file ("" if none or unreadable)."""
    from PIL import Image, UnidentifiedImageError

    from modules.images.codec import read_infotext

    try:
        with Image.open(path) as image:
            return read_infotext(image) or ""
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
        return ""


def _day_of(relative: Path, mtime: float) -> date:
    for part in reversed(relative.parts[:-1]):
        if _DATE_DIR.match(part):
            try:
                return date.fromisoformat(part)
            except ValueError:
                break
    return datetime.fromtimestamp(mtime).date()


def _parse(text: str) -> tuple[str, str, dict[str, str]]:
    """(prompt, model name, parameters) of an infotext."""
    if not text:
        return "", "", {}
    from modules.images.infotext import parse_infotext

    try:
        params = parse_infotext(text)
    except Exception:  # noqa: BLE001 - a broken infotext still shows the image
        return text.splitlines()[0] if text else "", "", {}
    flat = {str(k): str(v) for k, v in params.items()}
    return flat.get("Prompt", ""), flat.get("Model", ""), flat


class HistoryIndex:
    """An index of the images under one outputs folder (thread-safe; infotexts cached by mtime)."""

    def __init__(self, outputs_dir: Path) -> None:
        self.outputs_dir = Path(outputs_dir)
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[int, int, HistoryEntry]] = {}

    @property
    def trash_dir(self) -> Path:
        return self.outputs_dir / TRASH

    def scan(self) -> list[HistoryEntry]:
        """Every image (not in the trash), newest first."""
        entries: list[HistoryEntry] = []
        seen: set[str] = set()
        if self.outputs_dir.is_dir():
            for root, dirs, files in os.walk(self.outputs_dir):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                for name in files:
                    if not name.lower().endswith(IMAGE_SUFFIXES) or name.startswith("."):
                        continue
                    path = Path(root) / name
                    entry = self.entry(path)
                    if entry is not None:
                        entries.append(entry)
                        seen.add(entry.relative)
        with self._lock:
            for stale in set(self._cache) - seen:
                del self._cache[stale]
        entries.sort(key=lambda e: (e.mtime, e.relative), reverse=True)
        return entries

    def entry(self, path: Path) -> HistoryEntry | None:
        """The entry of an image under the outputs folder; None when it is gone or when its real path
        lies outside the folder (a symlink to a picture elsewhere is neither listed nor thumbnailed)."""
        try:
            stat = path.stat()
            real = path.resolve(strict=True)
        except OSError:
            return None
        if self.outputs_dir.resolve() not in real.parents:
            return None
        relative = path.relative_to(self.outputs_dir)
        key = relative.as_posix()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and cached[0] == stat.st_mtime_ns and cached[1] == stat.st_size:
            return cached[2]
        text = read_image_infotext(path)
        prompt, model, params = _parse(text)
        entry = HistoryEntry(path=path, relative=key, kind=relative.parts[0] if len(relative.parts) > 1 else "",
                             day=_day_of(relative, stat.st_mtime), mtime=stat.st_mtime, infotext=text,
                             prompt=prompt, model=model, params=params)
        with self._lock:
            self._cache[key] = (stat.st_mtime_ns, stat.st_size, entry)
        return entry

    def search(self, query: str = "", *, model: str | None = None, kind: str | None = None,
               date_from: date | None = None, date_to: date | None = None,
               entries: Iterable[HistoryEntry] | None = None) -> list[HistoryEntry]:
        """Images whose infotext contains every word of ``query`` (case-insensitive), from ``model``,
        of ``kind`` (e.g. ``txt2img-images``), made between ``date_from`` and ``date_to`` inclusive."""
        words = [w for w in (query or "").lower().split() if w]
        found = []
        for entry in self.scan() if entries is None else entries:
            haystack = (entry.infotext or entry.relative).lower()
            if words and not all(word in haystack for word in words):
                continue
            if model and entry.model != model:
                continue
            if kind and entry.kind != kind:
                continue
            if date_from and entry.day < date_from:
                continue
            if date_to and entry.day > date_to:
                continue
            found.append(entry)
        return found

    def models(self, entries: Iterable[HistoryEntry] | None = None) -> list[str]:
        return sorted({e.model for e in (self.scan() if entries is None else entries) if e.model})

    def kinds(self, entries: Iterable[HistoryEntry] | None = None) -> list[str]:
        return sorted({e.kind for e in (self.scan() if entries is None else entries) if e.kind})

    def resolve(self, relative: str) -> Path:
        """The file for ``relative`` if it lies inside the outputs folder (and not in the trash)."""
        root = self.outputs_dir.resolve()
        path = (root / relative).resolve()
        if root not in path.parents or (self.trash_dir.resolve() in path.parents):
            raise HistoryError(f"{relative!r} is not an image of the outputs folder")
        if not path.is_file():
            raise HistoryError(f"{relative} no longer exists")
        return self.outputs_dir / Path(relative)

    def delete(self, relative: str) -> Path:
        """Move an image to ``outputs/.trash/<relative>``; returns where it went."""
        path = self.resolve(relative)
        target = self.trash_dir / Path(relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        stem, suffix, n = target.stem, target.suffix, 1
        while target.exists():
            target = target.with_name(f"{stem}-{n}{suffix}")
            n += 1
        shutil.move(str(path), str(target))
        with self._lock:
            self._cache.pop(Path(relative).as_posix(), None)
        return target
