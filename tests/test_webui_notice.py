"""The page says so when the job file was found damaged at start and replaced (issue 33.2), with no
absolute server path in the message."""

from __future__ import annotations

from pathlib import Path

from modules.app_context import create_app_context
from modules.flags import parse_flags
from tests.test_jobs_store_damage import _break_header, _build


def test_a_repaired_job_file_is_announced_in_the_page(tmp_path: Path) -> None:
    from webui.app import _studio_notice

    db, _ = _build(tmp_path, wal=False)
    _break_header(db)
    ctx = create_app_context(parse_flags(["--data-dir", str(db.parent), "--skip-load-model-at-start"]))
    try:
        notice = _studio_notice(ctx)
        assert 'data-kind="warn"' in notice and "damaged" in notice
        assert "jobs.sqlite3.corrupt-" in notice
        assert str(tmp_path) not in notice
        assert list(db.parent.glob("jobs.sqlite3.corrupt-*"))
    finally:
        ctx.close()


def test_no_notice_for_a_healthy_job_file(tmp_path: Path) -> None:
    from webui.app import _studio_notice

    ctx = create_app_context(parse_flags(["--data-dir", str(tmp_path), "--skip-load-model-at-start"]))
    try:
        assert _studio_notice(ctx) == ""
    finally:
        ctx.close()
