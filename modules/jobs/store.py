"""The job store: every job's request, state and result metadata in SQLite (``jobs.sqlite3``).

What is kept: the request as JSON (``model_dump_json``, with its kind), who submitted it and by
which door, its idempotency key, timestamps, error and result metadata (output paths, seeds,
infotexts; never pixels: results are re-read from the saved files).

On start, :meth:`JobStore.recover` marks jobs that were running when the process died as failed
("interrupted by a restart/crash") and hands back the queued ones, in submission order, so the
queue can resume them. WAL mode with ``synchronous=NORMAL``: a killed process loses nothing that
was committed; one connection, guarded by a lock, serves every thread.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from modules.jobs.model import CRASH_REASON, JobState

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    owner TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL DEFAULT '',
    request_json TEXT,
    request_hash TEXT,
    idempotency_key TEXT,
    state TEXT NOT NULL,
    resumable INTEGER NOT NULL DEFAULT 0,
    keep_outputs INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    error TEXT,
    user_error INTEGER NOT NULL DEFAULT 0,
    result_json TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_idempotency ON jobs(owner, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_state_seq ON jobs(state, seq);
CREATE INDEX IF NOT EXISTS jobs_owner_seq ON jobs(owner, seq);
"""

class JobStoreError(RuntimeError):
    """The job database cannot be opened (corrupt, wrong version, not writable)."""


class _NewerSchema(JobStoreError):
    pass


@dataclass(frozen=True)
class StoredJob:
    id: str
    seq: int
    kind: str
    owner: str | None
    source: str
    request_json: str | None
    request_hash: str | None
    idempotency_key: str | None
    state: JobState
    resumable: bool
    keep_outputs: bool
    created_at: float
    started_at: float | None
    finished_at: float | None
    error: str | None
    user_error: bool
    result_meta: dict[str, Any] | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "StoredJob":
        meta = json.loads(row["result_json"]) if row["result_json"] else None
        return cls(id=row["id"], seq=row["seq"], kind=row["kind"], owner=row["owner"] or None,
                   source=row["source"], request_json=row["request_json"], request_hash=row["request_hash"],
                   idempotency_key=row["idempotency_key"], state=JobState(row["state"]),
                   resumable=bool(row["resumable"]), keep_outputs=bool(row["keep_outputs"]),
                   created_at=row["created_at"], started_at=row["started_at"], finished_at=row["finished_at"],
                   error=row["error"], user_error=bool(row["user_error"]), result_meta=meta)


@dataclass(frozen=True)
class NewJob:
    """The columns written when a job is submitted."""

    id: str
    seq: int
    kind: str
    owner: str | None
    source: str
    request_json: str | None
    request_hash: str | None
    idempotency_key: str | None
    resumable: bool
    keep_outputs: bool
    created_at: float


class JobStore:
    """SQLite-backed record of every job (thread-safe; writes are short transactions)."""

    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                str(self._path), check_same_thread=False, isolation_level=None, timeout=10)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise _NewerSchema(f"{self._path} was written by a newer Atelier (schema {version}); "
                                    "upgrade, or move the file away to start with an empty job history")
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            if self._db is not None:
                self._db.close()
            raise JobStoreError(f"cannot open the job database {self._path}: {exc}") from None

    @property
    def path(self) -> Path:
        return self._path

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _execute(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            if self._db is None:  # closed (shutdown): late writes from a finishing worker are dropped
                return []
            return self._db.execute(sql, tuple(params)).fetchall()

    # -- writes ----------------------------------------------------------------------------
    def insert(self, job: NewJob) -> None:
        self._execute(
            "INSERT INTO jobs (id, seq, kind, owner, source, request_json, request_hash, idempotency_key, state,"
            " resumable, keep_outputs, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (job.id, job.seq, job.kind, job.owner or "", job.source, job.request_json, job.request_hash,
             job.idempotency_key, JobState.QUEUED.value, int(job.resumable), int(job.keep_outputs), job.created_at))

    def mark_started(self, job_id: str, started_at: float) -> None:
        self._execute("UPDATE jobs SET state = ?, started_at = ? WHERE id = ?",
                      (JobState.RUNNING.value, started_at, job_id))

    def mark_finished(self, job_id: str, state: JobState, *, finished_at: float, error: str | None,
                      user_error: bool = False, result_meta: dict[str, Any] | None = None) -> None:
        meta = json.dumps(result_meta, default=str) if result_meta is not None else None
        self._execute("UPDATE jobs SET state = ?, finished_at = ?, error = ?, user_error = ?, result_json = ?"
                      " WHERE id = ?", (state.value, finished_at, error, int(user_error), meta, job_id))

    def recover(self, reason: str = CRASH_REASON) -> tuple[list[str], list[StoredJob]]:
        """Fail the jobs left running by a dead process; return (their ids, the queued jobs in order)."""
        now = time.time()
        running = [r["id"] for r in self._execute("SELECT id FROM jobs WHERE state = ?", (JobState.RUNNING.value,))]
        self._execute("UPDATE jobs SET state = ?, error = ?, finished_at = ? WHERE state = ?",
                      (JobState.FAILED.value, reason, now, JobState.RUNNING.value))
        rows = self._execute("SELECT * FROM jobs WHERE state = ? ORDER BY seq", (JobState.QUEUED.value,))
        return running, [StoredJob.from_row(r) for r in rows]

    def prune(self, keep: int) -> int:
        """Forget all but the newest ``keep`` finished jobs (output files are never touched)."""
        finished = [s.value for s in JobState if s.finished]
        with self._lock:
            if self._db is None:
                return 0
            cur = self._db.execute(
                f"DELETE FROM jobs WHERE state IN ({','.join('?' * len(finished))}) AND id NOT IN ("
                f" SELECT id FROM jobs WHERE state IN ({','.join('?' * len(finished))}) ORDER BY seq DESC LIMIT ?)",
                (*finished, *finished, keep))
            return cur.rowcount

    # -- reads -----------------------------------------------------------------------------
    def max_seq(self) -> int:
        rows = self._execute("SELECT COALESCE(MAX(seq), 0) AS m FROM jobs")
        return int(rows[0]["m"]) if rows else 0

    def get(self, job_id: str) -> StoredJob | None:
        rows = self._execute("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return StoredJob.from_row(rows[0]) if rows else None

    def find_idempotent(self, owner: str | None, key: str) -> StoredJob | None:
        rows = self._execute("SELECT * FROM jobs WHERE owner = ? AND idempotency_key = ?", (owner or "", key))
        return StoredJob.from_row(rows[0]) if rows else None

    def list(self, *, states: Iterable[JobState] = (), owner: str | None = None, limit: int = 100,
             before_seq: int | None = None) -> list[StoredJob]:
        """Newest first; filtered by state(s), owner, and ``seq < before_seq`` (paging)."""
        where, params = [], []
        state_values = [s.value for s in states]
        if state_values:
            where.append(f"state IN ({','.join('?' * len(state_values))})")
            params.extend(state_values)
        if owner is not None:
            where.append("owner = ?")
            params.append(owner)
        if before_seq is not None:
            where.append("seq < ?")
            params.append(before_seq)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._execute(f"SELECT * FROM jobs {clause} ORDER BY seq DESC LIMIT ?", (*params, limit))
        return [StoredJob.from_row(r) for r in rows]

    # -- clean stop (issue 33 point 5) ---------------------------------------------------------
    def requeue(self, job_id: str) -> None:
        """Put a job a clean stop interrupted back in the queue: the next start runs it again."""
        self._execute("UPDATE jobs SET state = ?, started_at = NULL, finished_at = NULL, error = NULL WHERE id = ?",
                      (JobState.QUEUED.value, job_id))

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the database file and truncate it, so a clean stop leaves
        one self-contained file (no ``-wal`` content)."""
        with self._lock:
            if self._db is not None:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()


def open_job_store(path: Path) -> JobStore:
    """Open the job store; a corrupt file is moved aside (and logged) so the studio still starts."""
    try:
        return JobStore(path)
    except _NewerSchema:
        raise
    except JobStoreError as exc:
        aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        log.error("%s; moved it to %s and started an empty job history", exc, aside)
        for suffix in ("", "-wal", "-shm"):
            source = path.with_name(path.name + suffix)
            if source.exists():
                source.replace(aside.with_name(aside.name + suffix))
        return JobStore(path)
