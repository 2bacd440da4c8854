"""Damaged job databases: find the damage, keep the file, save every row that can still be read.

A job database can be damaged by a disk or file system fault, a copy taken mid-write, or a file
cut short (with or without its ``-wal``). SQLite then answers ``database disk image is malformed``
or ``file is not a database`` to whichever query touches the damaged page, so one bad page would
otherwise stop the studio from starting, or make a listing fail. This module:

* checks a file before the studio opens it for writing (:func:`check_file`: ``PRAGMA quick_check``
  on a read-only connection, which keeps the ``-wal`` as it is: a read-only connection never
  checkpoints it into a damaged file);
* moves the damaged file and its ``-wal``/``-shm`` aside under one clear name (:func:`move_aside`);
* reads the rows that are still readable, row range by row range (:func:`readable_rows`: Python's
  sqlite3 has no ``.recover``), skipping ranges that raise and narrowing them down to single rows,
  from a scratch copy of the damaged file, rebuilding a broken 100-byte file header on that copy
  when nothing can be read without it (:func:`salvage`).

The damaged original is never modified, and output images are never touched: the job database
only names them.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import struct
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

log = logging.getLogger(__name__)

SIDE_FILES = ("", "-wal", "-shm")   # the database and its WAL companions, moved and copied together
_SQLITE_IOERR, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_NOTADB = 10, 11, 13, 26
#: PERM, BUSY, LOCKED, READONLY, FULL, CANTOPEN, AUTH: the file may be fine, it just cannot be used now
_USABLE_LATER = frozenset({3, 5, 6, 8, 13, 14, 23})
_USABLE_LATER_TEXT = ("locked", "readonly", "read-only", "unable to open", "disk is full", "permission", "authoriz")
_MAX_FAILED_PROBES = 200_000         # bounds the work on a file damaged beyond any use
_FALLBACK_ROWID_SPAN = 1_000_000     # searched when no b-tree can say which rowid is the largest
_HEADER_PAGE_SIZES = (4096, 1024, 2048, 8192, 16384, 32768, 65536, 512)


def _primary_code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF   # extended codes (e.g. SQLITE_CORRUPT_INDEX) keep the primary


def is_damage(exc: sqlite3.Error) -> bool:
    """True when SQLite says the file itself is damaged or unreadable (malformed, not a database, an
    I/O error such as a short read of a file cut short): reading around it may still find rows."""
    code = _primary_code(exc)
    if code is not None:
        return code in (_SQLITE_CORRUPT, _SQLITE_NOTADB, _SQLITE_IOERR)
    text = str(exc)
    return "malformed" in text or "not a database" in text or "disk I/O error" in text


def calls_for_repair(exc: sqlite3.Error) -> bool:
    """True for any database error except those that say the file may well be fine but cannot be
    used right now (locked, busy, read-only, full, cannot be opened): moving such a file aside
    would hide a good job history, perhaps from under another process still using it."""
    code = _primary_code(exc)
    if code is not None:
        return code not in _USABLE_LATER
    return not any(text in str(exc).lower() for text in _USABLE_LATER_TEXT)


def is_disk_full(exc: sqlite3.Error) -> bool:
    code = _primary_code(exc)
    return code == _SQLITE_FULL if code is not None else "disk is full" in str(exc)


@dataclass(frozen=True)
class FileCheck:
    """What a read-only look at the file found: its schema version and, if damaged, why."""

    user_version: int | None = None
    problem: str | None = None


def check_file(path: Path) -> FileCheck:
    """Read the schema version and run ``PRAGMA quick_check``, without writing to the file.

    Errors that are not damage (cannot open, locked) are left to the read-write open to report."""
    if not path.exists():
        return FileCheck()
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error:
        return FileCheck()
    version: int | None = None
    try:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        findings = [str(row[0]) for row in db.execute("PRAGMA quick_check(5)")]
        if findings != ["ok"]:
            lines = [line.strip() for text in findings for line in text.splitlines()
                     if line.strip() and not line.startswith("***")]
            return FileCheck(version, f"quick_check: {'; '.join(lines[:2]) or 'not ok'}")
        return FileCheck(version)
    except sqlite3.DatabaseError as exc:
        return FileCheck(version, str(exc) if is_damage(exc) else None)
    finally:
        db.close()


def move_aside(path: Path, label: str = "corrupt") -> Path:
    """Rename the database and its -wal/-shm to ``<name>.<label>-<time>[-n]``; returns the new name."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = path.with_name(f"{path.name}.{label}-{stamp}")
    n = 1
    while any(aside.with_name(aside.name + s).exists() for s in SIDE_FILES):
        n += 1
        aside = path.with_name(f"{path.name}.{label}-{stamp}-{n}")
    for suffix in SIDE_FILES:
        source = path.with_name(path.name + suffix)
        if source.exists():
            source.replace(aside.with_name(aside.name + suffix))
    return aside


@dataclass
class ReadResult:
    """Rows read (each with ``_rowid_`` first), in rowid order; ``failed_probes`` counts ranges that raised."""

    rows: list[sqlite3.Row]
    failed_probes: int = 0


def _first_value(db: sqlite3.Connection, queries: Iterable[str]) -> int | None:
    for sql in queries:
        try:
            value = db.execute(sql).fetchone()[0]
        except sqlite3.DatabaseError as exc:
            if not is_damage(exc):
                raise
            continue
        if value is not None:
            return int(value)
    return None


def _index_names(db: sqlite3.Connection, table: str) -> list[str]:
    try:
        return [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?",
                                         (table,))]
    except sqlite3.DatabaseError as exc:
        if not is_damage(exc):
            raise
        return []


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def readable_rows(db: sqlite3.Connection, table: str = "jobs", columns: Sequence[str] = ("*",)) -> ReadResult:
    """Every row of ``table`` that can be read, skipping damaged pages.

    Reads rowid ranges in order; when a range raises, the rows before the failure are kept and the
    rest of the range is halved until the unreadable part is single rowids, which are skipped. The
    largest rowid comes from the table or, if its last page is damaged, from one of its indexes
    (each holds every rowid). Errors that are not damage (e.g. the file vanished) propagate."""
    result = ReadResult(rows=[])
    try:
        if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone() is None:
            return result
    except sqlite3.DatabaseError as exc:   # the schema itself is unreadable: nothing to find the table by
        if not is_damage(exc):
            raise
        return result
    cols = ", ".join(columns)
    select = f"SELECT rowid AS _rowid_, {cols} FROM {_quote(table)} WHERE"
    # one rowid is looked up, not scanned: a scan steps on to the next (perhaps damaged) page after it
    point, span = f"{select} rowid = ?", f"{select} rowid BETWEEN ? AND ? ORDER BY rowid"
    t = _quote(table)
    hi = _first_value(db, [f"SELECT max(rowid) FROM {t}",
                           *(f"SELECT max(rowid) FROM {t} INDEXED BY {_quote(i)}" for i in _index_names(db, table))])
    lo = _first_value(db, [f"SELECT min(rowid) FROM {t}"])
    lo = min(lo, 1) if lo is not None else 1
    if hi is None:
        hi = lo + _FALLBACK_ROWID_SPAN
    stack = [(lo, hi)]
    while stack and result.failed_probes < _MAX_FAILED_PROBES:
        start, end = stack.pop()
        last = start - 1
        try:
            for row in db.execute(point, (start,)) if start == end else db.execute(span, (start, end)):
                result.rows.append(row)
                last = row[0]
            continue
        except sqlite3.DatabaseError as exc:
            if not is_damage(exc):
                raise
            result.failed_probes += 1
        if start == end:   # a single rowid that cannot be read: skip it
            continue
        start = last + 1
        if start >= end:   # none left, or one that the failed range read did not reach: try it alone
            if start == end:
                stack.append((start, end))
            continue
        mid = (start + end) // 2
        stack.append((mid + 1, end))   # popped second: rows stay in rowid order
        stack.append((start, mid))
    if stack:
        log.warning("stopped reading the damaged table %s after %d unreadable ranges", table, result.failed_probes)
    return result


def count_rows(db: sqlite3.Connection, table: str = "jobs") -> int | None:
    """How many rows the table (or any of its indexes) says it has; None when none can say."""
    t = _quote(table)
    return _first_value(db, [f"SELECT count(*) FROM {t}",
                             *(f"SELECT count(*) FROM {t} INDEXED BY {_quote(i)}" for i in _index_names(db, table))])


def _wal_page_size(wal: Path) -> int | None:
    try:
        with wal.open("rb") as f:
            head = f.read(32)
    except OSError:
        return None
    if len(head) < 32 or head[:4] not in (b"\x37\x7f\x06\x82", b"\x37\x7f\x06\x83"):
        return None
    size = struct.unpack(">I", head[8:12])[0]
    return size if size in _HEADER_PAGE_SIZES else None


def rebuild_header(db_file: Path, page_size: int) -> None:
    """Write a plain, valid 100-byte SQLite header (WAL mode, UTF-8) over the first bytes of ``db_file``.

    Only ever used on a scratch copy: the page content after the header is left as it is, so a
    file whose header alone is broken reads again."""
    pages = max(1, -(-db_file.stat().st_size // page_size))
    header = bytearray(100)
    header[0:16] = b"SQLite format 3\x00"
    header[16:18] = struct.pack(">H", 1 if page_size == 65536 else page_size)
    header[18:24] = bytes([2, 2, 0, 64, 32, 32])     # WAL read/write versions, no reserved bytes, payload fractions
    header[24:28] = struct.pack(">I", 1)            # change counter ...
    header[28:32] = struct.pack(">I", pages)        # ... and the page count it validates
    header[40:44] = struct.pack(">I", 1)            # schema cookie
    header[44:48] = struct.pack(">I", 4)            # schema format
    header[56:60] = struct.pack(">I", 1)            # UTF-8
    header[92:96] = struct.pack(">I", 1)            # version-valid-for = change counter
    header[96:100] = struct.pack(">I", sqlite3.sqlite_version_info[0] * 1_000_000
                                 + sqlite3.sqlite_version_info[1] * 1000 + sqlite3.sqlite_version_info[2])
    with db_file.open("r+b") as f:
        f.write(header)


@dataclass(frozen=True)
class SalvageResult:
    saved: int
    lost: int | None   # rows the damaged file counted but that could not be saved; None when unknown


def _read_copy(copy: Path, table: str) -> tuple[ReadResult, int | None]:
    db = sqlite3.connect(str(copy), timeout=10)
    db.row_factory = sqlite3.Row
    try:
        return readable_rows(db, table), count_rows(db, table)
    finally:
        db.close()


def _header_page_sizes(damaged: Path) -> list[int]:
    first = _wal_page_size(damaged.with_name(damaged.name + "-wal"))
    return list(dict.fromkeys([*([first] if first else []), *_HEADER_PAGE_SIZES]))


def salvage(damaged: Path, insert: Callable[[sqlite3.Row], bool], table: str = "jobs") -> SalvageResult:
    """Read every readable row of ``table`` from a scratch copy of ``damaged`` (with its -wal) and
    hand each to ``insert`` (which returns whether it kept it). The damaged files are not modified."""
    with tempfile.TemporaryDirectory(prefix=".salvage-", dir=damaged.parent) as tmp:
        copy = Path(tmp) / "damaged.sqlite3"
        for suffix in ("", "-wal"):   # no -shm: SQLite rebuilds it from the WAL itself
            source = damaged.with_name(damaged.name + suffix)
            if source.exists():
                shutil.copyfile(source, copy.with_name(copy.name + suffix))
        if not copy.exists():
            return SalvageResult(0, None)
        try:
            read, counted = _read_copy(copy, table)
        except sqlite3.Error as exc:
            log.warning("could not read %s: %s", damaged, exc)
            read, counted = ReadResult(rows=[]), None
        if not read.rows and copy.stat().st_size >= 512:   # nothing readable: perhaps only the header is broken
            for page_size in _header_page_sizes(damaged):
                rebuild_header(copy, page_size)
                try:
                    again, again_counted = _read_copy(copy, table)
                except sqlite3.Error:
                    continue
                if again.rows:
                    log.info("%s had a broken file header; read it again with a rebuilt one (page size %d)",
                             damaged, page_size)
                    read, counted = again, again_counted
                    break
        saved = sum(1 for row in read.rows if insert(row))
    lost = max(0, counted - saved) if counted is not None else None
    return SalvageResult(saved, lost)


@dataclass(frozen=True)
class RepairReport:
    """A damaged job database that was replaced by a fresh one at start-up (shown to the user)."""

    path: Path          # the job database (now the fresh file)
    kept_as: Path       # where the damaged file (and its -wal/-shm) now lies
    reason: str         # what SQLite said about it
    saved: int          # jobs saved into the fresh file
    lost: int | None    # jobs it had that could not be read (None: unknown)
    at: float

    @property
    def message(self) -> str:
        if self.lost is None:
            lost = ", an unknown number could not be read"
        else:
            lost = f", {self.lost} could not be read" if self.lost else ""
        return (f"The job history {self.path} was damaged ({self.reason}). {self.saved} job(s) were saved into a "
                f"fresh file{lost}; the damaged file is kept as {self.kept_as}. Output images are untouched.")
