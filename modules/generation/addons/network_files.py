"""Add-on model files on disk (LoRA, embeddings, VAE, ControlNet): listing, lookup and a small parse cache.

:class:`FileCache` keeps parsed files keyed by path + size + mtime (a changed file is parsed again),
least recently used first out. It is owned by whoever creates it (the app context or a test), never a
module global.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Generic, Iterable, Sequence, TypeVar

T = TypeVar("T")


def list_files(dirs: Iterable[Path], suffixes: Sequence[str]) -> list[Path]:
    """Files with one of ``suffixes`` under ``dirs`` (recursive, sorted, hidden names skipped, deduplicated)."""
    wanted = tuple(s.lower() for s in suffixes)
    seen: set[Path] = set()
    found: list[Path] = []
    for folder in dirs:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if any(part.startswith(".") for part in path.relative_to(folder).parts):
                continue
            if path.is_file() and path.name.lower().endswith(wanted):
                resolved = path.resolve()
                if resolved not in seen:
                    seen.add(resolved)
                    found.append(path)
    return found


def file_stem(path: Path, suffixes: Sequence[str] = ()) -> str:
    """Name without the (possibly double, e.g. ``.vae.safetensors``) suffix given in ``suffixes``."""
    name = path.name
    for suffix in sorted(suffixes, key=len, reverse=True):
        if name.lower().endswith(suffix.lower()):
            return name[: -len(suffix)]
    return path.stem


class FileCache(Generic[T]):
    """Parsed files keyed by (absolute path, size, mtime); at most ``max_entries``, LRU. Thread-safe."""

    def __init__(self, max_entries: int = 8) -> None:
        self.max_entries = max(1, int(max_entries))
        self._entries: OrderedDict[tuple[str, int, int], T] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(path: Path) -> tuple[str, int, int]:
        stat = os.stat(path)
        return os.path.abspath(path), stat.st_size, stat.st_mtime_ns

    def get(self, path: Path, parse: Callable[[Path], T]) -> T:
        """The cached value for ``path``, or ``parse(path)`` stored for next time."""
        key = self.key(path)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        value = parse(path)
        with self._lock:
            stale = [k for k in self._entries if k[0] == key[0]]
            for k in stale:
                del self._entries[k]
            self._entries[key] = value
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return value

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
