"""Checkpoint files through Ray's object store (setting ``ray_model_transfer = object_store``).

With ``shared_path`` (the default) every actor reads the checkpoint from the data dir by the same absolute
path. With ``object_store`` the studio reads a single-file checkpoint once, puts it into the object store in
chunks (:class:`Shipper`, at most one copy per SHA-256 for the studio's lifetime) and sends the job the
file's hash, name and chunk references; an actor that lacks the file (:func:`ensure_local`) fetches the
chunks into ``<its local cache>/<name>`` (the name as the studio lists it, so per-model settings still
apply), checks the SHA-256 and loads from there; the next job on that checkpoint finds it in the cache (its
hash checked, from the actor's hash cache) without fetching; a cached file of that name with another hash
is fetched again. The cache is per node: ``ATELIER_RAY_MODEL_CACHE``
on that node, else ``~/.cache/atelier/ray-models``.

No Ray import here: the studio passes its ``ray.put`` and an actor its ``ray.get``.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

#: bytes per object-store chunk (a fetch holds one chunk in memory at a time)
CHUNK_BYTES = 64 << 20
CACHE_ENV = "ATELIER_RAY_MODEL_CACHE"
MODES = ("shared_path", "object_store")


class TransferError(RuntimeError):
    """A checkpoint that could not be sent or arrived damaged; the message is for the user."""


def cache_dir() -> Path:
    """This node's cache of checkpoints fetched through the object store."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured) if configured else Path.home() / ".cache" / "atelier" / "ray-models"


def cached_path(root: Path, name: str) -> Path:
    """Where checkpoint ``name`` (relative, as the studio lists it: ``sub/x.safetensors``) is cached."""
    parts = Path(name.replace("\\", "/")).parts
    if not parts or Path(name).is_absolute() or any(part in ("", ".", "..") for part in parts):
        raise TransferError(f"{name!r} is not a checkpoint name that can be cached")
    return root.joinpath(*parts)


@dataclass
class Shipment:
    """What a job carries to its actor: the file's identity and its chunks in the object store."""

    sha256: str
    name: str
    size: int
    chunks: list[Any] = field(default_factory=list)  # ObjectRefs (passed nested, so Ray does not resolve them)

    def as_dict(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "name": self.name, "size": self.size, "chunks": list(self.chunks)}


class Shipper:
    """The studio side: each checkpoint (by SHA-256) put into the object store once; thread-safe."""

    def __init__(self, put: Callable[[bytes], Any], chunk_bytes: int = CHUNK_BYTES) -> None:
        self._put = put
        self._chunk_bytes = chunk_bytes
        self._lock = threading.Lock()
        self._shipped: dict[str, Shipment] = {}
        self.puts = 0  # files put into the object store

    def shipment(self, path: Path, name: str, sha256: str) -> Shipment:
        with self._lock:
            known = self._shipped.get(sha256)
            if known is not None:
                return known
            chunks = []
            size = 0
            try:
                with path.open("rb") as handle:
                    for block in iter(lambda: handle.read(self._chunk_bytes), b""):
                        chunks.append(self._put(block))
                        size += len(block)
            except OSError as exc:
                raise TransferError(f"cannot read {path.name} to send it to the Ray actors: "
                                    f"{exc.strerror or exc}") from None
            shipment = Shipment(sha256=sha256, name=name, size=size, chunks=chunks)
            self._shipped[sha256] = shipment
            self.puts += 1
            return shipment


def ensure_local(root: Path, shipment: dict[str, Any], get: Callable[[Any], bytes],
                 hash_of: Callable[[Path], str]) -> tuple[Path, bool]:
    """The shipped checkpoint in this node's cache (fetched when missing or damaged); (path, fetched).

    ``hash_of`` gives a cached file's SHA-256 (the actor's hash cache, so a file already checked is not read
    again); a fetched file is hashed as it is written, and one that does not match is deleted."""
    sha, size = str(shipment["sha256"]).lower(), int(shipment["size"])
    target = cached_path(root, str(shipment["name"]))
    if target.is_file() and target.stat().st_size == size and hash_of(target) == sha:
        return target, False
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    digest = hashlib.sha256()
    try:
        with part.open("wb") as handle:
            for ref in shipment["chunks"]:
                block = get(ref)
                digest.update(block)
                handle.write(block)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    if digest.hexdigest() != sha or part.stat().st_size != size:
        part.unlink(missing_ok=True)
        raise TransferError(f"{target.name} arrived through Ray's object store with another SHA-256 "
                            f"({digest.hexdigest()[:12]}… instead of {sha[:12]}…); nothing was kept")
    os.replace(part, target)
    return target, True
