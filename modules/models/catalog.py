"""The list of checkpoints a user can pick, with A1111 titles and aliases.

Listing never reads weights and never hashes: a title shows ``[shorthash]`` only once the
file has been hashed (at its first load), exactly like A1111.
"""

from __future__ import annotations

import difflib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from modules.models.hashing import HashCache

CHECKPOINT_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".bin")


@dataclass(frozen=True)
class CheckpointInfo:
    """One checkpoint file or diffusers folder found in a checkpoint folder."""

    path: Path
    name: str            # relative to its folder, e.g. "sub/model.safetensors" (A1111 "name")
    is_folder: bool

    @property
    def model_name(self) -> str:
        """A1111's ``model_name``: the name without extension, separators flattened."""
        stem = self.name if self.is_folder else self.name.rsplit(".", 1)[0]
        return stem.replace("/", "_").replace("\\", "_")

    @property
    def name_for_extra(self) -> str:
        return self.path.name if self.is_folder else self.path.stem


class CheckpointCatalog:
    """Scans checkpoint folders and resolves any A1111-style checkpoint reference."""

    def __init__(self, folders: Iterable[Path], hashes: HashCache) -> None:
        self._folders = tuple(folders)
        self._hashes = hashes
        self._lock = threading.Lock()
        self._items: list[CheckpointInfo] = []
        self.refresh()

    def refresh(self) -> list[CheckpointInfo]:
        found: dict[Path, CheckpointInfo] = {}
        for folder in self._folders:
            if not folder.is_dir():
                continue
            for item in sorted(folder.rglob("*")):
                if any(part.startswith(".") for part in item.relative_to(folder).parts):
                    continue
                if item.is_dir() and (item / "model_index.json").is_file():
                    info = CheckpointInfo(item.resolve(), item.relative_to(folder).as_posix(), True)
                elif item.is_file() and item.suffix.lower() in CHECKPOINT_EXTENSIONS:
                    if _inside_diffusers_folder(item, folder):
                        continue  # a component of a diffusers folder, not a checkpoint
                    info = CheckpointInfo(item.resolve(), item.relative_to(folder).as_posix(), False)
                else:
                    continue
                found.setdefault(info.path, info)
        with self._lock:
            self._items = sorted(found.values(), key=lambda i: i.name.lower())
            return list(self._items)

    def list(self) -> list[CheckpointInfo]:
        with self._lock:
            return list(self._items)

    # -- titles and hashes ---------------------------------------------------------------
    def sha256(self, info: CheckpointInfo) -> str | None:
        """The cached SHA-256, or None if the file was never hashed (listing never hashes)."""
        return None if info.is_folder else self._hashes.cached_sha256(info.path)

    def shorthash(self, info: CheckpointInfo) -> str | None:
        sha = self.sha256(info)
        return sha[:10] if sha else None

    def title(self, info: CheckpointInfo) -> str:
        short = self.shorthash(info)
        return f"{info.name} [{short}]" if short else info.name

    def aliases(self, info: CheckpointInfo) -> list[str]:
        ids = [info.name, info.model_name, info.name_for_extra, self.title(info), str(info.path)]
        sha = self.sha256(info)
        if sha:
            ids += [sha, sha[:10], f"{info.name} [{sha[:10]}]", f"{info.name_for_extra} [{sha[:10]}]"]
        return ids

    def find(self, reference: str) -> CheckpointInfo | None:
        """Resolve a title, name, model name, hash or path, as A1111 accepts them."""
        ref = reference.strip()
        if not ref:
            return None
        items = self.list()
        for info in items:
            if ref in self.aliases(info):
                return info
        low = ref.lower()
        for info in items:
            if low in (a.lower() for a in self.aliases(info)):
                return info
        # A1111 falls back to a substring match on the title
        matches = [i for i in items if low in self.title(i).lower()]
        if len(matches) == 1:
            return matches[0]
        if matches:
            return sorted(matches, key=lambda i: len(i.name))[0]
        return None

    def closest_names(self, reference: str, n: int = 3) -> list[str]:
        return difflib.get_close_matches(reference, [i.name for i in self.list()], n=n, cutoff=0.3)


def _inside_diffusers_folder(item: Path, root: Path) -> bool:
    parent = item.parent
    while parent != root and root in parent.parents:
        if (parent / "model_index.json").is_file():
            return True
        parent = parent.parent
    return False
