"""The embeddings index: one L2-normalised float32 vector per (image, model id), in SQLite.

Images are named by their path relative to ``outputs/`` ("/" separators), so the data dir can move. Each row
keeps the file's mtime (ns) and size: a file that changed since it was embedded is *stale* and embedded again.
The vectors of one model id are read into one numpy matrix the first time they are searched and kept until
the index changes (only the last model searched is kept, so memory holds one matrix).

Thread-safe: one connection, used under the instance's lock (the index job writes while searches read).
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

if TYPE_CHECKING:
    import numpy as np

DB_NAME = "embeddings.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS vectors (
    model_id TEXT NOT NULL,
    path TEXT NOT NULL,
    mtime_ns INTEGER NOT NULL,
    size INTEGER NOT NULL,
    dim INTEGER NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (model_id, path)
) WITHOUT ROWID;
"""


class EmbeddingIndexError(ValueError):
    """A vector that cannot be stored as given (the message says why)."""


@dataclass(frozen=True)
class FileStamp:
    """An image of the gallery as the index sees it: its relative path, mtime and size."""

    path: str
    mtime_ns: int
    size: int


@dataclass(frozen=True)
class Matrix:
    """A model's vectors: ``paths[i]`` is the image of row ``i`` of ``vectors`` ``(n, d)``."""

    model_id: str
    paths: tuple[str, ...]
    vectors: "np.ndarray"
    version: int


class EmbeddingIndex:
    """The vectors of ``db_path`` (created on first write; reading a missing file finds nothing)."""

    def __init__(self, db_path: Path) -> None:
        self.path = Path(db_path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._version = 0
        self._cached: Matrix | None = None

    # -- connection ----------------------------------------------------------------------------------
    def exists(self) -> bool:
        """Whether the index was ever written (the gallery was indexed once)."""
        return self.path.is_file()

    def _db(self, create: bool) -> sqlite3.Connection | None:
        """Under the lock: the open connection, opened now (creating the file only with ``create``)."""
        if self._conn is None:
            if not create and not self.path.is_file():
                return None
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_SCHEMA)
            self._conn = conn
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- reading -------------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Vectors per model id."""
        with self._lock:
            db = self._db(create=False)
            if db is None:
                return {}
            return {model: n for model, n in db.execute("SELECT model_id, COUNT(*) FROM vectors GROUP BY model_id")}

    def count(self, model_id: str) -> int:
        return self.counts().get(model_id, 0)

    def stale(self, model_id: str, stamps: Iterable[FileStamp]) -> list[FileStamp]:
        """Those of ``stamps`` with no vector of ``model_id``, or whose file changed since it was embedded."""
        stamps = list(stamps)
        with self._lock:
            db = self._db(create=False)
            if db is None:
                return stamps
            known = {path: (mtime, size) for path, mtime, size in
                     db.execute("SELECT path, mtime_ns, size FROM vectors WHERE model_id = ?", (model_id,))}
        return [s for s in stamps if known.get(s.path) != (s.mtime_ns, s.size)]

    def vector(self, model_id: str, stamp: FileStamp) -> "np.ndarray | None":
        """The stored vector of an image, when it is current (same mtime and size)."""
        import numpy as np

        with self._lock:
            db = self._db(create=False)
            row = None if db is None else db.execute(
                "SELECT vector FROM vectors WHERE model_id = ? AND path = ? AND mtime_ns = ? AND size = ?",
                (model_id, stamp.path, stamp.mtime_ns, stamp.size)).fetchone()
        return None if row is None else np.frombuffer(row[0], dtype=np.float32).copy()

    def matrix(self, model_id: str) -> Matrix:
        """Every vector of ``model_id`` as one matrix (read once, kept until the index changes)."""
        import numpy as np

        with self._lock:
            cached = self._cached
            if cached is not None and cached.model_id == model_id and cached.version == self._version:
                return cached
            version = self._version
            db = self._db(create=False)
            rows = [] if db is None else db.execute(
                "SELECT path, dim, vector FROM vectors WHERE model_id = ? ORDER BY path", (model_id,)).fetchall()
        dims = {dim for _, dim, _ in rows}
        if len(dims) > 1:  # one model id has one size; a second would be a broken file
            raise EmbeddingIndexError(f"the index holds vectors of several sizes for {model_id}; "
                                      f"index the gallery again")
        dim = dims.pop() if dims else 0
        vectors = (np.frombuffer(b"".join(blob for _, _, blob in rows), dtype=np.float32).reshape(len(rows), dim)
                   if rows else np.zeros((0, 0), np.float32))
        found = Matrix(model_id, tuple(path for path, _, _ in rows), vectors, version)
        with self._lock:
            if self._version == version:
                self._cached = found
        return found

    # -- writing -------------------------------------------------------------------------------------
    def add(self, model_id: str, stamps: Sequence[FileStamp], vectors: "np.ndarray") -> None:
        """Store (or replace) the vectors of ``stamps`` (row ``i`` for ``stamps[i]``), normalised here."""
        import numpy as np

        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(stamps):
            raise EmbeddingIndexError(f"expected {len(stamps)} vectors, got an array of shape {vectors.shape}")
        if not np.all(np.isfinite(vectors)):
            raise EmbeddingIndexError("the model gave a vector that is not finite")
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
        rows = [(model_id, s.path, int(s.mtime_ns), int(s.size), vectors.shape[1], vectors[i].tobytes())
                for i, s in enumerate(stamps)]
        with self._lock:
            db = self._db(create=True)
            assert db is not None
            with db:
                db.executemany("INSERT OR REPLACE INTO vectors (model_id, path, mtime_ns, size, dim, vector) "
                               "VALUES (?, ?, ?, ?, ?, ?)", rows)
            cached = self._cached
            self._changed()
            if cached is not None and cached.model_id == model_id and cached.version == self._version - 1:
                self._cached = _updated(cached, [s.path for s in stamps], vectors, self._version)

    def keep_only(self, paths: Iterable[str]) -> int:
        """Remove the vectors (of every model) of images not in ``paths``; returns how many went."""
        keep = set(paths)
        with self._lock:
            db = self._db(create=False)
            if db is None:
                return 0
            gone = [(model, path) for model, path in db.execute("SELECT model_id, path FROM vectors")
                    if path not in keep]
            if gone:
                with db:
                    db.executemany("DELETE FROM vectors WHERE model_id = ? AND path = ?", gone)
                self._changed()
            return len(gone)

    def touch(self) -> None:
        """Create the (empty) index file: the gallery counts as indexed from now on."""
        with self._lock:
            self._db(create=True)

    def _changed(self) -> None:
        self._version += 1
        self._cached = None


def _updated(cached: Matrix, paths: Sequence[str], vectors: "np.ndarray", version: int) -> Matrix | None:
    """``cached`` with the rows of ``paths`` replaced or added (so a few new images do not make the next search
    read every vector again); None when the sizes differ."""
    import numpy as np

    if cached.vectors.size and cached.vectors.shape[1] != vectors.shape[1]:
        return None
    rows = {path: i for i, path in enumerate(cached.paths)}
    matrix = cached.vectors.copy() if cached.vectors.size else np.zeros((0, vectors.shape[1]), np.float32)
    new_paths, new_rows = list(cached.paths), []
    for path, vector in zip(paths, vectors):
        row = rows.get(path)
        if row is None:
            rows[path] = len(new_paths)
            new_paths.append(path)
            new_rows.append(vector)
        elif row < len(matrix):
            matrix[row] = vector
        else:  # the same new path twice in one call: the last vector wins
            new_rows[row - len(matrix)] = vector
    if new_rows:
        matrix = np.concatenate([matrix, np.stack(new_rows)])
    return Matrix(cached.model_id, tuple(new_paths), matrix, version)
