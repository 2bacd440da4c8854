"""Live progress of one job in the page: a bar with step count and ETA, the queue position while it
waits, cheap previews every N steps (settings), and the final status line.

:func:`watch` polls the job (no extra thread, no global state) and yields only when something
visible changed; :func:`final_status` renders the outcome: done, interrupted, cancelled or failed.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    from PIL import Image

    from modules.app_context import AppContext
    from modules.jobs.model import Job

POLL_SECONDS = 0.2


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    return f"ETA {seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"ETA {seconds} s"


def bar_html(state: str, fraction: float, text: str, job_id: str | None = None) -> str:
    """The progress element (``data-state``: queued, running, stopping, done, interrupted, cancelled, failed;
    ``data-job``: the job shown, which webui/js/reattach.js keeps in the browser until its result is shown)."""
    percent = max(0.0, min(1.0, fraction)) * 100
    colour = {"failed": "#b91c1c", "cancelled": "#6b7280", "interrupted": "#b45309"}.get(state, "#ea580c")
    bar = ("" if state in ("done", "failed", "cancelled", "interrupted") else
           '<div style="background:var(--neutral-200,#e5e7eb);border-radius:4px;height:10px;overflow:hidden;'
           f'margin-bottom:4px"><div style="width:{percent:.1f}%;height:100%;background:{colour}"></div></div>')
    text_colour = colour if state in ("failed", "interrupted") else "inherit"
    job = f' data-job="{html.escape(job_id)}"' if job_id else ""
    return (f'<div class="atelier-progress" data-state="{state}" data-percent="{percent:.0f}"{job}>{bar}'
            f'<span style="color:{text_colour}">{html.escape(text)}</span></div>')


def running_html(ctx: "AppContext", job: "Job") -> str:
    """The bar for a waiting or running job."""
    position = ctx.queue.position(job.id)
    if position is not None and position > 0:
        return bar_html("queued", 0.0, f"Waiting in queue: {position} job(s) ahead of this one", job.id)
    snap = job.progress
    if not snap.total_steps:
        return bar_html("running", 0.0, (snap.text or "Starting").capitalize() + "…", job.id)
    parts = [f"{snap.fraction * 100:.0f}%", f"step {snap.step}/{snap.total_steps}"]
    if snap.job_count > 1:
        parts.append(f"batch {snap.job_no + 1}/{snap.job_count}")
    eta = _eta(snap.eta_seconds())
    if eta:
        parts.append(eta)
    if snap.text:
        parts.append(snap.text)
    return bar_html("running", snap.fraction, " · ".join(parts), job.id)


@dataclass
class Tick:
    """What changed since the last yield: the bar, and a new preview image (or None)."""

    status: str
    preview: "Image.Image | None"
    step: int


def watch(ctx: "AppContext", job: "Job", *, previews: bool = True,
          interval: float = POLL_SECONDS) -> Iterator[Tick]:
    """Yield a :class:`Tick` whenever the bar or the preview changes, until the job is finished."""
    last_status, last_preview = "", 0
    while not job.done.wait(interval):
        status = running_html(ctx, job)
        snap = job.progress
        preview = None
        if previews and snap.preview_id and snap.preview_id != last_preview:
            last_preview = snap.preview_id
            try:
                preview = job.control.preview()
            except Exception:  # noqa: BLE001 - a preview is a nicety; never fail the job view for it
                preview = None
        if status != last_status or preview is not None:
            last_status = status
            yield Tick(status, preview, snap.step)


def final_status(job: "Job") -> tuple[str, bool]:
    """(status HTML, success) for a finished job."""
    from modules.jobs.model import JobState

    result = job.result
    if job.state is JobState.FAILED:
        return bar_html("failed", 1.0, f"Failed: {job.error or 'unknown error'}", job.id), False
    if job.state is JobState.CANCELLED or result is None:
        made = len(getattr(result, "images", []) or [])
        note = f" ({made} image(s) kept)" if made else ""
        return bar_html("cancelled", 0.0, f"Cancelled: {job.error or 'stopped'}{note}", job.id), False
    seconds = float(getattr(result, "seconds", 0.0) or 0.0)
    count = len(result.images)
    summary = getattr(result, "batch", None)  # a batch job's summary (modules.jobs.batch_summary)
    tail = f" · batch: {summary.text()}" if summary is not None and hasattr(summary, "text") else ""
    if getattr(result, "memory_mode", "") or getattr(result, "peak_memory_mb", None) is not None:
        from modules.backends.status import memory_line

        tail += f" · {memory_line(getattr(result, 'memory_mode', ''), getattr(result, 'peak_memory_mb', None))}"
    if getattr(result, "interrupted", False):
        return bar_html("interrupted", 1.0, f"Interrupted: {count} image(s) in {seconds:.1f} s{tail}", job.id), True
    return bar_html("done", 1.0, f"{count} image(s) in {seconds:.1f} s{tail}", job.id), True


def wait_started(job: "Job", timeout: float = 5.0) -> None:
    """Helper for tests: wait until the job left the queue."""
    deadline = time.monotonic() + timeout
    while job.started_at is None and not job.done.is_set() and time.monotonic() < deadline:
        time.sleep(0.02)


def results_gallery(result: Any) -> list[tuple[Any, str]]:
    """Gallery items of a result: (image, "seed N")."""
    return [(image, f"seed {seed}") for image, seed in zip(result.images, result.seeds)]


def run_and_follow(ctx: "AppContext", request: Any, owner: str) -> Iterator[tuple["Job | None", str]]:
    """Submit ``request`` (any job kind) and follow it: yields (None, status) while it waits or runs, then
    (the finished job, its status line); a refused request yields (None, the reason) and ends."""
    from modules.jobs.submit import submit_job
    from webui.common import readable

    try:
        job = submit_job(ctx, request, owner=owner, source="webui")
    except Exception as exc:  # noqa: BLE001 - refused (bad input, queue or disk full): said in the page
        yield None, bar_html("failed", 1.0, f"Not started: {readable(exc)}")
        return
    for tick in watch(ctx, job, previews=False):
        yield None, tick.status
    if job.error and job.result is None:
        yield job, bar_html("failed", 1.0, f"Failed: {job.error}")
    else:
        yield job, ""
