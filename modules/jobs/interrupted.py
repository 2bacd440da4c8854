"""Jobs a crash interrupted, offered to be resumed.

A job kind that keeps its own checkpoints (a training session) declares ``on_interrupted="offer_resume"``
(:class:`modules.jobs.kinds.JobKind`). A job of such a kind that was running when the process died is
recorded at the next start as ``interrupted`` (:meth:`modules.jobs.store.JobStore.mark_interrupted`), not
failed. Resuming it submits its stored request again, through the one submit path: the new job continues
from the kind's last checkpoint. The interrupted job then names the job that resumed it
(``result_meta["resumed_as"]``), so it is offered once.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Callable

from modules.jobs.model import Job, JobState
from modules.jobs.store import JobStoreError

if TYPE_CHECKING:
    from modules.app_context import AppContext

log = logging.getLogger(__name__)

RESUMED_AS = "resumed_as"
#: how many of the newest interrupted jobs are looked through
LOOK_BACK = 200


class NotResumable(ValueError):
    """This job is not an interrupted job waiting to be resumed (message for the user)."""


def is_offered(job: Job) -> bool:
    """An interrupted job not resumed yet, whose request could be read back."""
    return (job.state is JobState.INTERRUPTED and job.request is not None
            and not (job.result_meta or {}).get(RESUMED_AS))


def offered(ctx: "AppContext", kind: str | None = None, owner: str | None = None) -> list[Job]:
    """The interrupted jobs offered to be resumed (of ``kind``, of ``owner``), newest first, with their requests."""
    found = []
    for listed in ctx.queue.list_jobs(states=(JobState.INTERRUPTED,), owner=owner, limit=LOOK_BACK):
        if kind is not None and listed.kind != kind:
            continue
        job = ctx.queue.lookup(listed.id)  # read back with its request
        if job is not None and is_offered(job):
            found.append(job)
    return found


def resume(ctx: "AppContext", job_id: str, *, owner: str | None = None, source: str = "api",
           submit: Callable[..., Job] | None = None) -> Job:
    """Submit the interrupted job's request again (its kind's precheck applies); returns the new job.

    ``owner``: the caller; None keeps the interrupted job's owner."""
    from modules.jobs.submit import submit_job

    job = ctx.queue.lookup(job_id)
    if job is None:
        raise NotResumable(f"no job {job_id}")
    if job.state is not JobState.INTERRUPTED:
        raise NotResumable(f"job {job_id} is {job.state.value}: only a job interrupted by a crash can be resumed")
    if (job.result_meta or {}).get(RESUMED_AS):
        raise NotResumable(f"job {job_id} was resumed already, as job {job.result_meta[RESUMED_AS]}")
    if job.request is None:
        raise NotResumable(f"job {job_id} cannot be resumed: its request could not be read back")
    new = (submit or submit_job)(ctx, job.request, owner=owner if owner is not None else (job.owner or "webui"),
                                 source=source)
    try:
        ctx.store.mark_finished(job.id, JobState.INTERRUPTED, finished_at=job.finished_at or time.time(),
                                error=job.error, result_meta={**(job.result_meta or {}), RESUMED_AS: new.id})
    except JobStoreError as exc:  # the new job runs all the same; the old one may be offered once more
        log.warning("could not record that job %s was resumed as %s: %s", job.id, new.id, exc)
    return new
