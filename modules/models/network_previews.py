"""The picture on a model's card: ``<name>.preview.png`` beside the file (A1111's convention), else the first
image the studio made with it (found in the infotexts under ``outputs/``), else none (a placeholder).

Only two kinds of file are ever a preview: an image beside a listed model whose real path stays inside that
model's folder tree, or an image of the outputs folder (:class:`modules.gallery.history.HistoryIndex` keeps
symlinks out of it). Nothing a client names is opened: previews are looked up from listed models.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

if TYPE_CHECKING:
    from modules.gallery.history import HistoryEntry

#: what may sit beside a model as its picture, in A1111's order of preference
PREVIEW_SUFFIXES = (".preview.png", ".preview.jpg", ".preview.jpeg", ".preview.webp", ".png", ".jpg", ".jpeg",
                    ".webp")
_LORA_CALL = re.compile(r"<(?:lora|lyco):([^:>]+)", re.IGNORECASE)
#: a word of a prompt, as an embedding's name appears in it: "(bad-hands:1.2), easynegative" -> bad-hands, ...
_WORD = re.compile(r"[^\s,()\[\]{}:|<>]+")


def _inside(path: Path, root: Path) -> bool:
    try:
        real = path.resolve(strict=True)
    except OSError:
        return False
    return real.is_file() and root.resolve() in real.parents


def beside_preview(model: Path, root: Path) -> Path | None:
    """``<name>.preview.png`` (or .jpg/.webp, or ``<name>.png``) next to ``model`` whose real path lies under
    ``root`` (the model folder it was listed from); None when there is none."""
    stem = model.name if model.is_dir() else model.stem
    for suffix in PREVIEW_SUFFIXES:
        candidate = model.parent / f"{stem}{suffix}"
        if candidate.is_file() and _inside(candidate, root):
            return candidate
    return None


class OutputUses:
    """Which output image first used a LoRA, an embedding or a checkpoint, from the images' infotexts.

    The infotexts are read once per image (the history index caches them by mtime); outputs/ is walked at
    most once every ``rescan_after`` seconds (a page of cards asks once per card); the name -> image tables
    are rebuilt only when the set of images changes. Owned by its caller.
    """

    def __init__(self, outputs_dir: Path, rescan_after: float = 2.0) -> None:
        from modules.gallery.history import HistoryIndex

        self._index = HistoryIndex(outputs_dir)
        self.rescan_after = rescan_after  # seconds during which the last walk of outputs/ is reused
        self._scanned_at = float("-inf")
        self._lock = threading.Lock()
        self._signature: int | None = None
        self._oldest_first: list["HistoryEntry"] = []
        self._tables: dict[str, dict[str, tuple[int, Path]]] = {}

    def _entries(self) -> list["HistoryEntry"]:
        with self._lock:
            if time.monotonic() - self._scanned_at < self.rescan_after:
                return self._oldest_first  # one walk of outputs/ serves a whole page of cards
        entries = self._index.scan()  # newest first
        signature = hash(tuple((e.relative, e.mtime) for e in entries))
        with self._lock:
            self._scanned_at = time.monotonic()
            if signature != self._signature:
                self._signature = signature
                self._oldest_first = [e for e in reversed(entries) if e.kind != "extras-images"]
                self._tables = {}
            return self._oldest_first

    def _table(self, key: str, names_of: Callable[["HistoryEntry"], Iterable[str]]) -> dict[str, tuple[int, Path]]:
        """name (lower case) -> (age rank, the oldest image naming it)."""
        entries = self._entries()
        with self._lock:
            table = self._tables.get(key)
        if table is None:
            table = {}
            for rank, entry in enumerate(entries):
                for name in names_of(entry):
                    table.setdefault(name.strip().lower(), (rank, entry.path))
            with self._lock:
                self._tables[key] = table
        return table

    def first_lora_use(self, names: Iterable[str]) -> Path | None:
        """The oldest image whose prompt calls ``<lora:NAME`` for one of ``names`` (the stem, an alias)."""
        table = self._table("lora", lambda e: _LORA_CALL.findall(_prompts(e)))
        return _first(table, names)

    def first_model_use(self, names: Iterable[str]) -> Path | None:
        """The oldest image whose infotext says ``Model: NAME``."""
        table = self._table("checkpoint", lambda e: [e.model] if e.model else [])
        return _first(table, names)

    def first_embedding_use(self, name: str) -> Path | None:
        """The oldest image whose prompt or negative prompt has ``name`` as a word (between spaces, commas,
        brackets or a ``:weight``)."""
        table = self._table("embedding", lambda e: _WORD.findall(_prompts(e)))
        return _first(table, [name])


def _prompts(entry: "HistoryEntry") -> str:
    return f"{entry.prompt}\n{entry.params.get('Negative prompt', '')}"


def _first(table: dict[str, tuple[int, Path]], names: Iterable[str]) -> Path | None:
    """The oldest image naming any of ``names``."""
    found = [table[key] for key in {n.strip().lower() for n in names if n} if key in table]
    return min(found)[1] if found else None
