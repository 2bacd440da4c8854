"""A damaged job file never stops the studio (issue 33, point 2).

Damaged files are made from a real store (finished jobs naming output files, queued jobs), by
overwriting a page in the middle (with and without the WAL present), breaking the header, or cutting
the file short at an odd length (with and without the WAL). Each helper checks that its damage
really makes plain SQLite fail, so these tests fail without the repair. The slow test does the same
to a real server's file between two starts.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import random
import shutil
import signal
import sqlite3
import struct
import subprocess
import time
import uuid
from contextlib import closing
from pathlib import Path
from typing import Callable

import httpx
import pytest

from modules.jobs.model import JobState
from modules.jobs.store import (JobStore, JobStoreError, JobStoreFullError, JobStoreWriteError, NewJob,
                                open_job_store)
from modules.jobs.store_repair import RepairReport, calls_for_repair, readable_rows, rebuild_header
from tests.helpers.processes import start_launch, wait_up

PAGE = 4096
COLUMNS = ("id", "seq", "kind", "owner", "state", "request_json", "result_json", "error", "created_at")


# -- a real store, and its damage -----------------------------------------------------------------
def _new_job(seq: int, owner: str, words: str) -> NewJob:
    request = json.dumps({"kind": "txt2img", "prompt": f"{words} " * 60, "seed": seq})
    return NewJob(uuid.uuid4().hex, seq, "txt2img", owner, "api", request, hashlib.sha256(request.encode()).hexdigest(),
                  None, True, False, time.time())


def _finish(store: JobStore, job: NewJob, outputs: Path) -> None:
    image = outputs / f"{job.seq:05d}.png"
    image.write_bytes(os.urandom(64))
    store.mark_started(job.id, time.time())
    store.mark_finished(job.id, JobState.SUCCEEDED, finished_at=time.time(), error=None,
                        result_meta={"images": [str(image)], "seeds": [job.seq]})


def _rows(db: Path) -> dict[str, tuple]:
    """Every job of an undamaged file (read from a copy, so the original and its WAL stay as they are)."""
    with _copy(db) as copy:
        conn = sqlite3.connect(copy)
        try:
            return {r[0]: r for r in conn.execute(f"SELECT {', '.join(COLUMNS)} FROM jobs")}
        finally:
            conn.close()


class _copy:
    """A scratch copy of a database with its -wal (not -shm), removed on exit."""

    def __init__(self, db: Path) -> None:
        self.dir = db.parent.parent / f"copy-{uuid.uuid4().hex[:8]}"
        self.db = self.dir / db.name
        self.source = db

    def __enter__(self) -> Path:
        self.dir.mkdir()
        for suffix in ("", "-wal"):
            source = self.source.with_name(self.source.name + suffix)
            if source.exists():
                shutil.copyfile(source, self.db.with_name(self.db.name + suffix))
        return self.db

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.dir)


def _build(root: Path, *, wal: bool) -> tuple[Path, Path]:
    """A store of 40 finished jobs and 10 queued ones; with ``wal``, 6 more finished and 4 more queued
    live only in its -wal (kept by copying it aside before the store's close checkpoints it)."""
    data, outputs = root / "data", root / "outputs"
    data.mkdir(parents=True)
    outputs.mkdir()
    db = data / "jobs.sqlite3"
    store = JobStore(db)
    jobs = [_new_job(seq, "alice" if seq % 2 else "bob", "castle") for seq in range(1, 51)]
    for job in jobs:
        store.insert(job)
    for job in jobs[:40]:
        _finish(store, job, outputs)
    with closing(sqlite3.connect(db)) as other:  # closed before the store: its close cannot checkpoint the WAL
        assert other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
    if wal:
        later = [_new_job(seq, "carol", "lighthouse") for seq in range(51, 61)]
        for job in later:
            store.insert(job)
        for job in later[:6]:
            _finish(store, job, outputs)
        wal_file = db.with_name(db.name + "-wal")
        shutil.copyfile(wal_file, root / "kept-wal")
        store.close()
        shutil.copyfile(root / "kept-wal", wal_file)
        assert _wal_pages(db), "the WAL should hold the later jobs"
    else:
        store.close()
        assert not db.with_name(db.name + "-wal").exists()
    return db, outputs


def _wal_pages(db: Path) -> set[int]:
    wal = db.with_name(db.name + "-wal")
    data = wal.read_bytes() if wal.exists() else b""
    pages, offset = set(), 32
    while len(data) >= 32 and offset + 24 + PAGE <= len(data):
        pages.add(struct.unpack(">I", data[offset:offset + 4])[0])
        offset += 24 + PAGE
    return pages


def _per_row(db: Path) -> dict[str, tuple]:
    """The jobs plain SQLite can read one rowid at a time from the (damaged) file."""
    found: dict[str, tuple] = {}
    with _copy(db) as copy:
        conn = sqlite3.connect(copy)
        try:
            for rowid in range(1, 200):
                try:
                    found.update((r[0], r) for r in conn.execute(
                        f"SELECT {', '.join(COLUMNS)} FROM jobs WHERE rowid = ?", (rowid,)))
                except sqlite3.DatabaseError:
                    continue
        except sqlite3.DatabaseError:
            pass
        finally:
            conn.close()
    return found


def _assert_plain_sqlite_fails(db: Path) -> None:
    """The damage is real: without the repair, a check or a full listing of this file fails."""
    with _copy(db) as copy:
        conn = sqlite3.connect(copy)
        try:
            with pytest.raises(sqlite3.DatabaseError):
                if conn.execute("PRAGMA quick_check").fetchall() == [("ok",)]:
                    conn.execute("SELECT * FROM jobs ORDER BY seq").fetchall()
                    conn.execute("SELECT * FROM jobs INDEXED BY jobs_state_seq WHERE state = 'queued'").fetchall()
                else:
                    raise sqlite3.DatabaseError("quick_check failed")
        finally:
            conn.close()


def _overwrite_page(db: Path, accept: Callable[[set[str]], bool] | None = None) -> None:
    """Overwrite one page in the middle of the file (not one the WAL holds) with random bytes: the one
    nearest the middle for which ``accept`` (given the jobs still readable row by row) is true."""
    original = db.read_bytes()
    rng = random.Random(33)
    pages, in_wal = len(original) // PAGE, _wal_pages(db)
    middle = pages // 2 + 1
    for page in sorted((p for p in range(2, pages + 1) if p not in in_wal), key=lambda p: abs(p - middle)):
        data = bytearray(original)
        data[(page - 1) * PAGE:page * PAGE] = rng.randbytes(PAGE)
        db.write_bytes(bytes(data))
        if accept is None or accept(set(_per_row(db))):
            return
    raise AssertionError("no page found whose damage does what the test needs")


def _losing_rows(db: Path) -> Callable[[set[str]], bool]:
    total = len(_rows(db))
    return lambda readable: 0 < len(readable) < total


def _break_header(db: Path) -> None:
    data = bytearray(db.read_bytes())
    data[0:100] = random.Random(7).randbytes(100)
    db.write_bytes(bytes(data))


def _cut_short(db: Path) -> None:
    size = db.stat().st_size
    length = size * 5 // 8 + 777
    assert length % 2 == 1
    with db.open("r+b") as f:
        f.truncate(length)


DAMAGE: dict[str, Callable[[Path], None]] = {
    "page": lambda db: _overwrite_page(db, _losing_rows(db)),
    "header": _break_header,
    "cut": _cut_short,
}


def _side_files(db: Path) -> dict[str, bytes]:
    """The file and its WAL, when that has content (a read-only look may leave an empty one behind)."""
    files = {s: db.with_name(db.name + s) for s in ("", "-wal")}
    return {s: f.read_bytes() for s, f in files.items() if f.exists() and (s == "" or f.stat().st_size)}


def _outputs(outputs: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(outputs.iterdir())}


# -- damaged at start-up ----------------------------------------------------------------------------
@pytest.mark.parametrize(("damage", "wal"), [("page", True), ("page", False), ("header", False), ("cut", True),
                                             ("cut", False)])
def test_a_damaged_file_is_repaired_at_start(tmp_path: Path, damage: str, wal: bool,
                                             caplog: pytest.LogCaptureFixture) -> None:
    db, outputs = _build(tmp_path, wal=wal)
    before, images = _rows(db), _outputs(outputs)
    DAMAGE[damage](db)
    _assert_plain_sqlite_fails(db)
    # the rows a repair must keep: those plain SQLite reads intact one by one (a cut file can also
    # give rows of zeros or half-overwritten ones: those are not jobs any more)
    readable = {i for i, row in _per_row(db).items() if before.get(i) == row}
    damaged_files = _side_files(db)

    caplog.set_level(logging.INFO)
    store = open_job_store(db)
    running, queued = store.recover()
    store.prune(keep=10_000)
    listed = store.list(limit=1000)
    for job_id in before:
        store.get(job_id)

    # the damaged file and its WAL are kept, byte for byte, and the fact is told once
    assert store.repair is not None and store.repair_notice is not None
    kept = store.repair.kept_as
    assert kept.parent == db.parent and kept.name.startswith("jobs.sqlite3.corrupt-")
    assert _side_files(kept) == damaged_files
    assert str(kept) in store.repair_notice and "damaged" in store.repair_notice
    assert [r.message for r in caplog.records if "was damaged" in r.message] == [store.repair_notice]
    # every row that was readable is kept, unchanged (a rebuilt header or cut file may give more)
    saved = {j.id: j for j in listed}
    assert saved.keys() >= readable and saved.keys() <= before.keys()
    assert store.repair.saved == len(saved)
    if damage == "page":
        assert saved.keys() == readable and len(readable) < len(before)
    if damage == "header":
        assert saved.keys() == before.keys()  # only the header was broken: nothing is lost
    assert saved, "some jobs should survive every damage here"
    for job in saved.values():
        row = dict(zip(COLUMNS, before[job.id]))
        assert (job.seq, job.owner, job.state.value, job.request_json, job.error) == (
            row["seq"], row["owner"], row["state"], row["request_json"], row["error"])
        assert job.result_meta == (json.loads(row["result_json"]) if row["result_json"] else None)
        assert store.get(job.id) == job
    assert running == [] and {j.id for j in queued} == {i for i, j in saved.items() if j.state is JobState.QUEUED}
    # a new job is recorded and finished in the fresh file; output images are untouched
    new = _new_job(1000, "dave", "harbour")
    store.insert(new)
    store.mark_started(new.id, time.time())
    store.mark_finished(new.id, JobState.SUCCEEDED, finished_at=time.time(), error=None, result_meta={"images": []})
    assert store.get(new.id).state is JobState.SUCCEEDED
    store.close()
    assert _outputs(outputs) == images
    again = open_job_store(db)  # the fresh file opens cleanly next time
    assert again.repair is None and again.repair_notice is None and again.get(new.id) is not None
    again.close()


def test_a_broken_header_masked_by_the_wal_needs_no_repair(tmp_path: Path) -> None:
    """Page 1 in the WAL hides a broken header in the main file: SQLite reads it fine, nothing is moved."""
    db, _ = _build(tmp_path, wal=True)
    before = _rows(db)
    assert 1 in _wal_pages(db)
    _break_header(db)
    store = open_job_store(db)
    assert store.repair is None and {j.id for j in store.list(limit=1000)} == before.keys()
    store.close()
    assert not list(db.parent.glob("*.corrupt-*"))


def test_damage_found_by_recover_is_repaired_and_the_file_kept_as_it_was(tmp_path: Path) -> None:
    """The check passed, then recovery meets a damaged page: the open file is replaced, its WAL kept."""
    db, _ = _build(tmp_path, wal=False)
    store = JobStore(db)  # passes the check
    extra = _new_job(500, "erin", "meadow")
    store.insert(extra)  # lives in the WAL of the open store
    queued = {i for i, row in _rows(db).items() if row[COLUMNS.index("state")] == "queued"}
    _overwrite_page(db, lambda readable: bool(queued - readable))  # recovery reads the queued rows
    damaged = _side_files(db)
    assert damaged.get("-wal"), "the open store's WAL should hold the new job"
    running, queued = store.recover()
    assert store.repair is not None and _side_files(store.repair.kept_as) == damaged
    assert extra.id in {j.id for j in queued}
    assert store.prune(keep=10_000) == 0 and store.get(extra.id) is not None
    store.close()


def test_reads_in_a_running_studio_answer_what_they_can(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db, _ = _build(tmp_path, wal=False)
    before = _rows(db)
    store = JobStore(db)
    _overwrite_page(db, _losing_rows(db))
    readable = set(_per_row(db))
    lost = sorted(before.keys() - readable)
    assert lost and readable
    listed = store.list(limit=1000)
    assert {j.id for j in listed} == readable
    assert [j.seq for j in listed] == sorted((j.seq for j in listed), reverse=True)
    assert {j.id for j in store.list(states=[JobState.QUEUED])} == {
        i for i in readable if before[i][COLUMNS.index("state")] == "queued"}
    assert store.get(lost[0]) is None and store.get(sorted(readable)[0]) is not None
    assert store.max_seq() >= max(before[i][1] for i in readable)
    with pytest.raises(JobStoreWriteError, match=r"could not record the outcome of job .*malformed"):
        store.mark_finished(lost[0], JobState.SUCCEEDED, finished_at=time.time(), error=None)
    assert "reading what it can" in caplog.text
    store.close()


def test_unreadable_rows_are_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db, _ = _build(tmp_path, wal=False)
    good = _rows(db)
    bad = {"badjson": ("succeeded", "{not json", 1.0), "badstate": ("exploded", None, 1.0),
           "badtime": ("queued", None, "yesterday"), "notobject": ("succeeded", "[1, 2]", 1.0)}
    with sqlite3.connect(db) as conn:
        for seq, (job_id, (state, result, created)) in enumerate(bad.items(), start=900):
            conn.execute("INSERT INTO jobs (id, seq, kind, state, created_at, result_json) VALUES (?, ?, 'txt2img', ?, ?, ?)",
                         (job_id, seq, state, created, result))
    conn.close()
    store = open_job_store(db)
    assert store.repair is None
    running, queued = store.recover()
    assert "badtime" not in {j.id for j in queued}
    assert {j.id for j in store.list(limit=1000)} == good.keys()
    for job_id in bad:
        assert store.get(job_id) is None
    assert all(f"skipped job {job_id!r}" in caplog.text for job_id in bad)
    store.close()


def test_disk_full_writes_raise_a_typed_error(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite3")
    first = _new_job(1, "a", "x")
    store.insert(first)
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]  # noqa: SLF001 - a full disk, simulated
    store._db.execute(f"PRAGMA max_page_count = {pages}")  # noqa: SLF001
    with pytest.raises(JobStoreFullError, match="is full; free some space") as raised:
        for seq in range(2, 200):
            store.insert(_new_job(seq, "a", "y" * 40))
    assert isinstance(raised.value, JobStoreWriteError) and isinstance(raised.value, JobStoreError)
    cause = raised.value.__cause__
    assert isinstance(cause, sqlite3.OperationalError) and not calls_for_repair(cause)  # full is not damage
    with pytest.raises(JobStoreFullError):
        store.mark_finished(first.id, JobState.SUCCEEDED, finished_at=time.time(), error=None,
                            result_meta={"infotexts": ["z" * 20_000]})
    assert store.get(first.id).state is JobState.QUEUED  # reads still work
    store.close()


def test_a_newer_schema_is_still_refused(tmp_path: Path) -> None:
    db = tmp_path / "jobs.sqlite3"
    JobStore(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(JobStoreError, match="newer Atelier"):
        open_job_store(db)
    assert not list(tmp_path.glob("*.corrupt-*"))


def test_a_file_that_cannot_be_opened_is_left_where_it_is(tmp_path: Path) -> None:
    """Not damage (here: the path is a folder): a clear error, and nothing is moved aside or replaced."""
    db = tmp_path / "jobs.sqlite3"
    db.mkdir()
    (db / "keep.txt").write_text("mine")
    with pytest.raises(JobStoreError, match=r"cannot open the job database .*jobs\.sqlite3"):
        open_job_store(db)
    assert (db / "keep.txt").read_text() == "mine" and not list(tmp_path.glob("*.corrupt-*"))


def test_readable_rows_skips_exactly_the_damaged_page(tmp_path: Path) -> None:
    db, _ = _build(tmp_path, wal=False)
    _overwrite_page(db, _losing_rows(db))
    expected = set(_per_row(db))
    with _copy(db) as copy:
        conn = sqlite3.connect(copy)
        conn.row_factory = sqlite3.Row
        read = readable_rows(conn)
        conn.close()
    assert {r["id"] for r in read.rows} == expected and read.failed_probes > 0
    assert [r["_rowid_"] for r in read.rows] == sorted(r["_rowid_"] for r in read.rows)


def test_rebuild_header_reads_a_file_whose_header_alone_is_broken(tmp_path: Path) -> None:
    db, _ = _build(tmp_path, wal=False)
    before = _rows(db)
    _break_header(db)
    rebuild_header(db, PAGE)
    assert _rows(db).keys() == before.keys()


def test_the_repair_notice_says_what_was_kept_and_lost(tmp_path: Path) -> None:
    def notice(lost: int | None) -> str:
        return RepairReport(path=tmp_path / "jobs.sqlite3", kept_as=tmp_path / "jobs.sqlite3.corrupt-x",
                            reason="file is not a database", saved=3, lost=lost, at=0.0).message

    assert "3 job(s) were saved" in notice(0) and "could not be read" not in notice(0)
    assert "2 could not be read" in notice(2) and "an unknown number could not be read" in notice(None)
    assert all(str(tmp_path / "jobs.sqlite3.corrupt-x") in notice(n) and "\n" not in notice(n) for n in (0, 2, None))
    garbage = tmp_path / "jobs.sqlite3"
    garbage.write_bytes(b"not a database at all " * 300)
    store = open_job_store(garbage)
    assert store.repair is not None and store.repair.saved == 0 and "was damaged" in store.repair_notice
    assert store.list() == [] and store.max_seq() == 0
    store.close()
    assert store.repair.kept_as.read_bytes() == b"not a database at all " * 300


# -- a real server ----------------------------------------------------------------------------------


def _start(data: Path, ckpt: Path, port: int, log: Path) -> subprocess.Popen:
    return start_launch(["--nowebui", "--data-dir", str(data), "--ckpt-dir", str(ckpt), "--port", str(port)], log)


def _wait_up(http: httpx.Client, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    wait_up(http, proc, log, timeout, poll=0.2)


def _run_job(http: httpx.Client, seed: int) -> str:
    r = http.post("/api/v1/jobs", json={"kind": "txt2img", "request": {
        "prompt": "a shape", "width": 64, "height": 64, "steps": 2, "seed": seed}})
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    deadline = time.time() + 180
    while time.time() < deadline:
        state = http.get(f"/api/v1/jobs/{job_id}").json()["state"]
        if state in ("succeeded", "failed", "cancelled"):
            assert state == "succeeded"
            return job_id
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_studio_starts_on_a_damaged_job_file(tmp_path: Path, tiny_model) -> None:
    from tests.helpers.server import free_port

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    shutil.copy(tiny_model("sd1"), ckpt)
    data, log, port = tmp_path / "data", tmp_path / "server.log", free_port()
    images: dict[str, bytes] = {}
    proc = _start(data, ckpt, port, log)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            _wait_up(http, proc, log)
            old = [_run_job(http, seed) for seed in (11, 12, 13)]
            for job_id in old:
                for entry in http.get(f"/api/v1/jobs/{job_id}/result").json()["images"]:
                    images[entry["path"]] = base64.b64decode(entry["image"])
        _stop(proc)
        assert len(images) == 3 and all(Path(p).read_bytes() == b for p, b in images.items())

        db = data / "jobs.sqlite3"
        with closing(sqlite3.connect(db)) as conn:  # however the stop left it: one file, no WAL content
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        before = _rows(db)
        assert set(old) <= before.keys()
        _overwrite_page(db)
        _assert_plain_sqlite_fails(db)
        damaged = _side_files(db)
        intact = {i for i, row in _per_row(db).items() if before.get(i) == row}

        proc = _start(data, ckpt, port, log)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            _wait_up(http, proc, log)
            listed = http.get("/api/v1/jobs", params={"limit": 100})
            assert listed.status_code == 200, listed.text
            assert intact <= {j["id"] for j in listed.json()["jobs"]}
            for job_id in old:
                status = http.get(f"/api/v1/jobs/{job_id}")
                assert status.status_code == (200 if job_id in intact else 404), status.text
                if job_id in intact:
                    assert status.json()["state"] == "succeeded"
                    for entry in http.get(f"/api/v1/jobs/{job_id}/result").json()["images"]:
                        assert base64.b64decode(entry["image"]) == images[entry["path"]]
            new = _run_job(http, 21)
            assert new in {j["id"] for j in http.get("/api/v1/jobs").json()["jobs"]}
        kept = list(data.glob("jobs.sqlite3.corrupt-*"))
        assert [k for k in kept if not k.name.endswith(("-wal", "-shm"))], kept
        main = next(k for k in kept if not k.name.endswith(("-wal", "-shm")))
        assert main.read_bytes() == damaged[""]
        assert all(Path(p).read_bytes() == b for p, b in images.items())
        assert "was damaged" in log.read_text() and str(main) in log.read_text()
    finally:
        _stop(proc)
