"""Which job a freshly loaded page follows (progress that survives a reload, A1111's "restore progress").

A page remembers (in the browser) the id of the job it submitted until it has shown that job's result.
After a reload it asks :func:`job_to_reattach`:

1. the remembered job, when the queue (or the job store) still knows it, it belongs to this owner and is
   of the tab's kind: followed if unfinished, its result shown if it finished while the page was away;
2. else this owner's unfinished job of the tab's kind (submitted from another page of the same user, or
   from a page whose memory was lost): the running one first, else the one that will run next.

Nothing here touches a page or a widget: the web UI calls this and renders what it gets.
:func:`stored_images` reads a finished job's images back from the paths its result metadata names (a
job rebuilt from the store after a restart has no pixels in memory).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from modules.jobs.model import JobState

if TYPE_CHECKING:
    from modules.jobs.model import Job
    from modules.jobs.queue import JobQueue

#: the job kinds a generation tab shows (img2img folder batches are followed where they were started)
TAB_KINDS: dict[str, tuple[str, ...]] = {"txt2img": ("txt2img",), "img2img": ("img2img", "img2img_batch")}
#: how many of an owner's newest jobs are looked through
LOOK_BACK = 50


@dataclass(frozen=True)
class StoredImage:
    """One image of a finished job, as the job store keeps it."""

    path: Path
    seed: int | None
    infotext: str


def _fits(job: "Job | None", owner: str, kinds: Iterable[str]) -> bool:
    return job is not None and job.owner == owner and job.kind in tuple(kinds)


def job_to_reattach(queue: "JobQueue", owner: str, kinds: Iterable[str], remembered: str | None = None,
                    *, exclude: Iterable[str] = ()) -> "Job | None":
    """The job a page of ``owner`` showing ``kinds`` should follow (see the module's docstring), or None.

    ``exclude``: ids the page has already shown (a page following several jobs one after the other)."""
    kinds, skipped = tuple(kinds), set(exclude)
    if remembered and remembered not in skipped:
        job = queue.lookup(remembered)
        if _fits(job, owner, kinds):
            return job
    unfinished = [job for job in queue.list_jobs(states=(JobState.RUNNING, JobState.QUEUED), owner=owner,
                                                 limit=LOOK_BACK)
                  if job.kind in kinds and job.id not in skipped]
    running = [job for job in unfinished if job.state is JobState.RUNNING]
    if running:
        return running[0]
    if not unfinished:
        return None
    positions = {job.id: queue.position(job.id) for job in unfinished}
    return min(unfinished, key=lambda job: (positions[job.id] is None, positions[job.id] or 0, job.seq))


def stored_images(job: "Job", allowed_root: Path) -> list[StoredImage]:
    """The saved images of a finished job that still exist under ``allowed_root`` (the outputs folder),
    from its result metadata; a missing or moved file is left out."""
    meta: dict[str, Any] = job.result_meta or {}
    root = Path(allowed_root).resolve()
    found: list[StoredImage] = []
    for item in meta.get("images") or []:
        raw = item.get("path") if isinstance(item, dict) else None
        if not raw:
            continue
        path = Path(raw).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            continue
        seed = item.get("seed")
        found.append(StoredImage(path, int(seed) if isinstance(seed, int) else None, str(item.get("infotext") or "")))
    return found
