"""The job store: every job's request, state and result metadata in SQLite (``jobs.sqlite3``).

What is kept: the request as JSON (``model_dump_json``, with its kind), who submitted it and by
which door, its idempotency key, timestamps, error and result metadata (output paths, seeds,
infotexts; never pixels: results are re-read from the saved files).

On start, :meth:`JobStore.recover` marks jobs that were running when the process died as failed
("interrupted by a restart/crash") and hands back the queued ones, in submission order, so the
queue can resume them. WAL mode with ``synchronous=NORMAL``: a killed process loses nothing that
was committed; one connection, guarded by a lock, serves every thread.

A damaged file never stops the studio: the file is checked (``PRAGMA quick_check``) before it is
opened for writing, and a damage found then, or while recovering and pruning at start-up, puts the
rows that can still be read into a fresh file, keeps the damaged one beside it and says so in
:attr:`JobStore.repair` (:mod:`modules.jobs.store_repair`). While the studio runs, a read that meets
damage answers with the rows it can read, an unreadable row is skipped (logged), and a failed write
raises a typed :class:`JobStoreWriteError` (:class:`JobStoreFullError` for a full disk).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

from modules.jobs.model import CRASH_REASON, INTERRUPTED_REASON, JobState
from modules.jobs.store_repair import (RepairReport, calls_for_repair, check_file, is_disk_full, move_aside,
                                       readable_rows, salvage)

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_T = TypeVar("_T")

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

_COLUMNS = ("id", "seq", "kind", "owner", "source", "request_json", "request_hash", "idempotency_key", "state",
            "resumable", "keep_outputs", "created_at", "started_at", "finished_at", "error", "user_error",
            "result_json")


class JobStoreError(RuntimeError):
    """The job database cannot be opened (corrupt, wrong version, not writable) or written."""


class _NewerSchema(JobStoreError):
    pass


class JobStoreDamagedError(JobStoreError):
    """The file is damaged (SQLite: malformed, not a database, ...); :func:`open_job_store` repairs it."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"the job database {path} is damaged: {reason}")
        self.reason = reason


class JobStoreWriteError(JobStoreError):
    """A job could not be recorded (damaged, locked or unwritable file); the message says which and why."""


class JobStoreFullError(JobStoreWriteError):
    """A job could not be recorded because the disk holding the job database is full."""


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
    def from_row(cls, row: sqlite3.Row | dict[str, Any]) -> "StoredJob":
        """Raises ValueError (or TypeError) for a row that cannot be a job: bad JSON, unknown state, wrong types."""
        meta = json.loads(row["result_json"]) if row["result_json"] else None
        if meta is not None and not isinstance(meta, dict):
            raise ValueError("result_json is not a JSON object")
        if not isinstance(row["id"], str) or not row["id"] or not isinstance(row["kind"], str):
            raise ValueError("no job id or kind")
        if not isinstance(row["seq"], int) or not isinstance(row["created_at"], (int, float)):
            raise ValueError("seq or created_at is not a number")
        if any(row[c] is not None and not isinstance(row[c], (int, float)) for c in ("started_at", "finished_at")):
            raise ValueError("started_at or finished_at is not a number")
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
    """SQLite-backed record of every job (thread-safe; writes are short transactions).

    ``repair`` is set when the file was found damaged at start-up and replaced by a fresh one
    holding what could be saved (:attr:`repair_notice` is its one-line message for the UI)."""

    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        self._lock = threading.Lock()
        self.repair: RepairReport | None = None
        self._db: sqlite3.Connection | None = self._connect()

    def _connect(self) -> sqlite3.Connection:
        """Check the file without writing to it, then open it for writing (creating it if new)."""
        found = check_file(self._path)
        if found.user_version is not None and found.user_version > SCHEMA_VERSION:
            raise self._newer(found.user_version)
        if found.problem is not None:
            raise JobStoreDamagedError(self._path, found.problem)
        db: sqlite3.Connection | None = None
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(str(self._path), check_same_thread=False, isolation_level=None, timeout=10)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise self._newer(version)
            db.executescript(_SCHEMA)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            return db
        except sqlite3.DatabaseError as exc:
            if db is not None:
                db.close()
            if calls_for_repair(exc):
                raise JobStoreDamagedError(self._path, str(exc)) from None
            raise JobStoreError(f"cannot open the job database {self._path}: {exc}") from None
        except _NewerSchema:
            assert db is not None
            db.close()
            raise

    def _newer(self, version: int) -> _NewerSchema:
        return _NewerSchema(f"{self._path} was written by a newer Atelier (schema {version}); "
                            "upgrade, or move the file away to start with an empty job history")

    @property
    def path(self) -> Path:
        return self._path

    @property
    def repair_notice(self) -> str | None:
        """One line for the UI when the file was damaged and replaced at start-up, else None."""
        return self.repair.message if self.repair is not None else None

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _execute(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        """Run one statement; SQLite's errors propagate (see :meth:`_write` and :meth:`_read`)."""
        with self._lock:
            if self._db is None:  # closed (shutdown): late writes from a finishing worker are dropped
                return []
            return self._db.execute(sql, tuple(params)).fetchall()

    def _write(self, what: str, sql: str, params: Iterable[Any]) -> None:
        """One write; a failure raises JobStoreFullError (disk full) or JobStoreWriteError, never sqlite3's."""
        try:
            self._execute(sql, params)
        except sqlite3.Error as exc:
            if is_disk_full(exc):
                raise JobStoreFullError(f"could not record {what}: the disk holding the job database "
                                        f"{self._path} is full; free some space") from exc
            raise JobStoreWriteError(f"could not record {what} in the job database {self._path}: {exc}") from exc

    # -- repair ----------------------------------------------------------------------------
    def _salvage_from(self, kept: Path, reason: str) -> None:
        """Copy what can be read of the damaged file ``kept`` into this (fresh) store; set and log :attr:`repair`."""
        saved, lost = 0, None
        with self._lock:
            db = self._db
            assert db is not None
            try:
                db.execute("BEGIN")
                result = salvage(kept, lambda row: _insert_salvaged(db, row))
                db.execute("COMMIT")
                saved, lost = result.saved, result.lost
            except (OSError, sqlite3.Error) as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                log.error("could not save the jobs of the damaged job database %s: %s", kept, exc)
        self.repair = RepairReport(path=self._path, kept_as=kept, reason=reason, saved=saved, lost=lost,
                                   at=time.time())
        log.error("%s", self.repair.message)

    def _repair(self, reason: str) -> None:
        """Replace the open, damaged file by a fresh one holding what can be read (start-up only)."""
        with self._lock:
            # A read-only connection held while the writer closes stops that close from checkpointing
            # the WAL into the damaged file; being read-only, it never checkpoints when it closes itself.
            hold = None
            try:
                hold = sqlite3.connect(f"{self._path.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
                hold.execute("PRAGMA user_version").fetchone()
            except sqlite3.Error:
                pass
            if self._db is not None:
                self._db.close()
                self._db = None
            if hold is not None:
                hold.close()
            kept = _move_aside(self._path)
            self._db = self._connect()
        self._salvage_from(kept, reason)

    def _repairing(self, what: str, action: Callable[[], _T], fallback: Callable[[], _T]) -> _T:
        """Run a start-up step; on damage repair the file and run it once more; other failures log and fall back."""
        try:
            return action()
        except sqlite3.DatabaseError as exc:
            if not calls_for_repair(exc):
                log.error("could not %s in the job database %s: %s", what, self._path, exc)
                return fallback()
            self._repair(str(exc))
        try:
            return action()
        except sqlite3.DatabaseError as exc:
            log.error("could not %s in the repaired job database %s: %s", what, self._path, exc)
            return fallback()

    # -- writes ----------------------------------------------------------------------------
    def insert(self, job: NewJob) -> None:
        self._write(
            f"the new job {job.id}",
            "INSERT INTO jobs (id, seq, kind, owner, source, request_json, request_hash, idempotency_key, state,"
            " resumable, keep_outputs, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (job.id, job.seq, job.kind, job.owner or "", job.source, job.request_json, job.request_hash,
             job.idempotency_key, JobState.QUEUED.value, int(job.resumable), int(job.keep_outputs), job.created_at))

    def mark_started(self, job_id: str, started_at: float) -> None:
        self._write(f"the start of job {job_id}", "UPDATE jobs SET state = ?, started_at = ? WHERE id = ?",
                    (JobState.RUNNING.value, started_at, job_id))

    def mark_finished(self, job_id: str, state: JobState, *, finished_at: float, error: str | None,
                      user_error: bool = False, result_meta: dict[str, Any] | None = None) -> None:
        meta = json.dumps(result_meta, default=str) if result_meta is not None else None
        self._write(f"the outcome of job {job_id}",
                    "UPDATE jobs SET state = ?, finished_at = ?, error = ?, user_error = ?, result_json = ?"
                    " WHERE id = ?", (state.value, finished_at, error, int(user_error), meta, job_id))

    def mark_interrupted(self, offers_resume: Callable[[str], bool], reason: str = INTERRUPTED_REASON) -> list[str]:
        """Before :meth:`recover`: record the jobs left running by a dead process whose kind offers to resume
        them (``offers_resume(kind)``) as ``interrupted`` instead of failed; returns their ids."""
        def mark() -> list[str]:
            rows = self._execute("SELECT id, kind FROM jobs WHERE state = ?", (JobState.RUNNING.value,))
            ids = [r["id"] for r in rows if isinstance(r["kind"], str) and offers_resume(r["kind"])]
            now = time.time()
            for job_id in ids:
                self._execute("UPDATE jobs SET state = ?, error = ?, finished_at = ? WHERE id = ? AND state = ?",
                              (JobState.INTERRUPTED.value, reason, now, job_id, JobState.RUNNING.value))
            return ids

        return self._repairing("mark the interrupted jobs", mark, list)

    def recover(self, reason: str = CRASH_REASON) -> tuple[list[str], list[StoredJob]]:
        """Fail the jobs left running by a dead process; return (their ids, the queued jobs in order).

        A damaged file is repaired first (see :func:`open_job_store`); a write that still fails is
        logged and the queued jobs that can be read are returned all the same."""
        def fail_running() -> list[str]:
            now = time.time()
            running = [r["id"] for r in self._execute("SELECT id FROM jobs WHERE state = ?", (JobState.RUNNING.value,))]
            self._execute("UPDATE jobs SET state = ?, error = ?, finished_at = ? WHERE state = ?",
                          (JobState.FAILED.value, reason, now, JobState.RUNNING.value))
            return running

        def queued() -> list[StoredJob]:
            return self._decode(self._execute("SELECT * FROM jobs WHERE state = ? ORDER BY seq",
                                              (JobState.QUEUED.value,)))

        running = self._repairing("fail the jobs left running", fail_running, list)
        waiting = self._repairing("read the queued jobs", queued,
                                  lambda: [j for j in self._scan() if j.state is JobState.QUEUED])
        return running, sorted(waiting, key=lambda j: j.seq)

    def prune(self, keep: int) -> int:
        """Forget all but the newest ``keep`` finished jobs (output files are never touched)."""
        finished = [s.value for s in JobState if s.finished]

        def delete() -> int:
            with self._lock:
                if self._db is None:
                    return 0
                cur = self._db.execute(
                    f"DELETE FROM jobs WHERE state IN ({','.join('?' * len(finished))}) AND id NOT IN ("
                    f" SELECT id FROM jobs WHERE state IN ({','.join('?' * len(finished))}) ORDER BY seq DESC LIMIT ?)",
                    (*finished, *finished, keep))
                return cur.rowcount

        return self._repairing("prune old jobs", delete, lambda: 0)

    # -- reads -----------------------------------------------------------------------------
    def _read(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row] | None:
        """The rows, or None (logged) when the database could not answer."""
        try:
            return self._execute(sql, params)
        except sqlite3.Error as exc:
            log.warning("the job database %s could not answer a read (%s); reading what it can", self._path, exc)
            return None

    def _scan(self) -> list[StoredJob]:
        """Every job that can still be read, page by page around the damaged ones (slow; only after a failed read)."""
        with self._lock:
            if self._db is None:
                return []
            try:
                rows = readable_rows(self._db).rows
            except sqlite3.Error as exc:
                log.warning("the job database %s cannot be read: %s", self._path, exc)
                return []
        return self._decode(rows)

    def _decode(self, rows: Iterable[sqlite3.Row]) -> list[StoredJob]:
        """Rows as jobs; an unreadable row is skipped with a log line, never raised."""
        jobs = []
        for row in rows:
            try:
                jobs.append(StoredJob.from_row(row))
            except (ValueError, TypeError, KeyError) as exc:
                job_id = row["id"] if "id" in row.keys() else "?"
                log.warning("skipped job %r of the job database %s: unreadable row (%s)", job_id, self._path, exc)
        return jobs

    def max_seq(self) -> int:
        rows = self._read("SELECT COALESCE(MAX(seq), 0) AS m FROM jobs")
        if rows is None:
            return max((j.seq for j in self._scan()), default=0)
        return int(rows[0]["m"]) if rows else 0

    def get(self, job_id: str) -> StoredJob | None:
        rows = self._read("SELECT * FROM jobs WHERE id = ?", (job_id,))
        jobs = self._decode(rows) if rows is not None else [j for j in self._scan() if j.id == job_id]
        return jobs[0] if jobs else None

    def find_idempotent(self, owner: str | None, key: str) -> StoredJob | None:
        rows = self._read("SELECT * FROM jobs WHERE owner = ? AND idempotency_key = ?", (owner or "", key))
        if rows is None:
            jobs = [j for j in self._scan() if j.owner == (owner or None) and j.idempotency_key == key]
        else:
            jobs = self._decode(rows)
        return jobs[0] if jobs else None

    def list(self, *, states: Iterable[JobState] = (), owner: str | None = None, limit: int = 100,
             before_seq: int | None = None) -> list[StoredJob]:
        """Newest first; filtered by state(s), owner, and ``seq < before_seq`` (paging)."""
        where, params = [], []
        states = tuple(states)
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
        rows = self._read(f"SELECT * FROM jobs {clause} ORDER BY seq DESC LIMIT ?", (*params, limit))
        if rows is not None:
            return self._decode(rows)
        jobs = [j for j in self._scan() if (not states or j.state in states) and (owner is None or (j.owner or "") == owner)
                and (before_seq is None or j.seq < before_seq)]
        return sorted(jobs, key=lambda j: j.seq, reverse=True)[:limit]

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
    """Open the job store so that the studio always starts.

    A damaged file (any database error but those that say a good file cannot be used right now) is
    moved aside as ``<name>.corrupt-<time>`` with its -wal/-shm, what can still be read of it is
    saved into a fresh file, and the store's :attr:`JobStore.repair` says so (logged as one line).
    A file of a newer schema, or one that is locked, read-only, on a full disk or cannot be opened,
    raises :class:`JobStoreError` with a message saying so, and is left where it is."""
    try:
        return JobStore(path)
    except JobStoreDamagedError as exc:
        reason = exc.reason
    kept = _move_aside(path)
    store = JobStore(path)
    store._salvage_from(kept, reason)
    return store


def _move_aside(path: Path) -> Path:
    try:
        return move_aside(path)
    except OSError as exc:
        raise JobStoreError(f"the job database {path} is damaged and cannot be moved aside ({exc}); "
                            "move it away by hand to start with an empty job history") from None


def _insert_salvaged(db: sqlite3.Connection, row: sqlite3.Row) -> bool:
    """Insert one row read from a damaged file, if it is a readable job; False when skipped."""
    values = {c: row[c] for c in _COLUMNS if c in row.keys()}
    try:
        StoredJob.from_row({**dict.fromkeys(_COLUMNS), **values})
        db.execute(f"INSERT INTO jobs ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
                   tuple(values.values()))
    except (ValueError, TypeError, KeyError, sqlite3.IntegrityError) as exc:
        log.warning("did not save job %r of the damaged job database: %s", values.get("id"), exc)
        return False
    return True
