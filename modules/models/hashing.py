"""Model file hashes (A1111 "AutoV2", kohya "addnet", legacy "AutoV1"), lazily computed and cached.

The cache is one JSON file (e.g. ``<data_dir>/cache/hashes.json``) mapping absolute file paths to
``{"size", "mtime", "sha256", "addnet"}``; an entry is reused only while the file's size and
mtime are unchanged. Hashes are computed on demand (A1111 hashes a checkpoint when it is first
loaded; listings use :meth:`HashCache.cached_sha256`, which never reads the model file).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, BinaryIO, Callable, Final

logger = logging.getLogger(__name__)

BLOCK_SIZE: Final[int] = 1024 * 1024
HashFunction = Callable[[Path], str]


def _digest_stream(handle: BinaryIO) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: handle.read(BLOCK_SIZE), b""):
        digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: Path | str) -> str:
    """Full-file SHA-256 hex digest, read in 1 MiB blocks."""
    with open(path, "rb") as handle:
        return _digest_stream(handle)


def addnet_hash_file(path: Path | str) -> str:
    """kohya "addnet" hash: SHA-256 after the safetensors header; full SHA-256 otherwise."""
    if Path(path).suffix.lower() != ".safetensors":
        return sha256_file(path)
    with open(path, "rb") as handle:
        header_length = int.from_bytes(handle.read(8), "little")
        handle.seek(header_length + 8)
        return _digest_stream(handle)


def legacy_model_hash(path: Path | str) -> str:
    """A1111 "old hash": first 8 hex of SHA-256 over 64 KiB at offset 1 MiB; 'NOFILE' if missing."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0x100000)
            return hashlib.sha256(handle.read(0x10000)).hexdigest()[0:8]
    except FileNotFoundError:
        return "NOFILE"


def shorthash(sha: str, length: int = 10) -> str:
    """Short form of a hash: 10 characters for models/VAEs (A1111), 12 for LoRA addnet hashes."""
    return sha[:length]


class HashCache:
    """Thread-safe, JSON-file-backed cache of file hashes keyed by absolute path."""

    def __init__(
        self,
        cache_file: Path | str,
        *,
        sha256_fn: HashFunction = sha256_file,
        addnet_fn: HashFunction = addnet_hash_file,
    ) -> None:
        self._cache_file = Path(cache_file)
        self._sha256_fn = sha256_fn
        self._addnet_fn = addnet_fn
        self._lock = threading.Lock()
        self._entries: dict[str, dict[str, Any]] = self._read_file()

    @property
    def cache_file(self) -> Path:
        """Where the cache is stored."""
        return self._cache_file

    def sha256(self, path: Path | str) -> str:
        """Full-file SHA-256, from cache when the file is unchanged, else computed and stored."""
        return self._get_or_compute(path, "sha256", self._sha256_fn)

    def addnet_hash(self, path: Path | str) -> str:
        """kohya addnet hash (LoRA ``Lora hashes`` use its first 12 characters), cached."""
        return self._get_or_compute(path, "addnet", self._addnet_fn)

    def cached_sha256(self, path: Path | str) -> str | None:
        """The cached SHA-256 if still valid for the file on disk; never reads the file."""
        return self._lookup(path, "sha256")

    def cached_addnet_hash(self, path: Path | str) -> str | None:
        """The cached addnet hash if still valid; never reads the file."""
        return self._lookup(path, "addnet")

    def carry(self, old: Path | str, new: Path | str) -> bool:
        """After a rename (same bytes, same size and mtime): the hashes known for ``old`` become ``new``'s,
        so a renamed model is not read again. False when nothing valid was known."""
        source, target = os.path.abspath(old), os.path.abspath(new)
        try:
            stat = os.stat(target)
        except FileNotFoundError:
            return False
        with self._lock:
            entry = self._entries.get(source)
            if entry is None or entry.get("size") != stat.st_size or entry.get("mtime") != stat.st_mtime:
                return False
            self._entries[target] = dict(entry)
            self._write_file(target, dict(entry))
        return True

    def _lookup(self, path: Path | str, field: str) -> str | None:
        key = os.path.abspath(path)
        try:
            stat = os.stat(key)
        except FileNotFoundError:
            return None
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.get("size") != stat.st_size or entry.get("mtime") != stat.st_mtime:
                return None
            value = entry.get(field)
        return value if isinstance(value, str) else None

    def _get_or_compute(self, path: Path | str, field: str, compute: HashFunction) -> str:
        cached = self._lookup(path, field)
        if cached is not None:
            return cached
        key = os.path.abspath(path)
        before = os.stat(key)
        value = compute(Path(key))
        after = os.stat(key)
        if (before.st_size, before.st_mtime) != (after.st_size, after.st_mtime):
            return value  # the file changed while hashing; do not cache a possibly stale value
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.get("size") != after.st_size or entry.get("mtime") != after.st_mtime:
                entry = {"size": after.st_size, "mtime": after.st_mtime}
            entry[field] = value
            self._entries[key] = entry
            self._write_file(key, entry)
        return value

    def _read_file(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self._cache_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            logger.warning("Ignoring unreadable hash cache %s: %s", self._cache_file, exc)
            return {}
        if not isinstance(data, dict):
            return {}
        return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, dict)}

    def _write_file(self, key: str, entry: dict[str, Any]) -> None:
        """Merge with what is on disk (other processes) and replace the file atomically."""
        merged = self._read_file()
        merged.update(self._entries)
        merged[key] = entry
        self._entries = merged
        self._cache_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=self._cache_file.name + ".", suffix=".tmp", dir=self._cache_file.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(merged, handle, indent=1, sort_keys=True)
            os.replace(tmp_name, self._cache_file)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
