"""Response models of the native job API (``/api/v1``); its request body is derived from the job-kind
registry (:meth:`modules.jobs.kinds.JobKindRegistry.submission_model`)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, Field

from modules.jobs.model import JobState


class JobSubmitted(BaseModel):
    id: str
    kind: str
    state: JobState
    position: int | None = Field(None, description="0: running; 1: runs next; null: finished")
    replayed: bool = Field(False, description="true when an earlier submit with the same Idempotency-Key is returned")


class JobStatus(BaseModel):
    id: str
    kind: str
    state: JobState
    owner: str | None = None
    source: str = ""
    position: int | None = Field(None, description="0: running; 1: runs next; null: finished")
    progress: float = Field(0.0, ge=0.0, le=1.0, description="fraction done")
    step: int = 0
    steps: int = 0
    batch: int = Field(0, description="current batch (0-based)")
    batches: int = 0
    eta_seconds: float | None = None
    text: str | None = None
    preview_id: int = Field(0, description="changes whenever a new preview is available")
    error: str | None = None
    resume_offered: bool = Field(False, description="interrupted by a crash and not resumed yet: "
                                                    "POST /api/v1/jobs/{id}/resume continues it")
    resumed_as: str | None = Field(None, description="the job that resumed this interrupted one")
    created: datetime
    started: datetime | None = None
    finished: datetime | None = None


class JobList(BaseModel):
    jobs: list[JobStatus]
    next_before: int | None = Field(None, description="pass as ?before= to get the next (older) page")


class JobImage(BaseModel):
    index: int
    image: str | None = Field(None, description="raw base64 PNG (with its infotext); null if the file is gone")
    infotext: str = ""
    path: str | None = None
    seed: int | None = None
    subseed: int | None = None
    missing: bool = Field(False, description="true when the saved file can no longer be read")


class JobResult(BaseModel):
    id: str
    kind: str
    state: JobState
    images: list[JobImage] = Field(default_factory=list)
    info: dict[str, Any] = Field(default_factory=dict, description="size, sampler, model, seconds, interrupted")
    error: str | None = None


class CancelResult(BaseModel):
    id: str
    state: JobState
    cancelled: bool = Field(..., description="false when the job had already finished")


class QueueStatus(BaseModel):
    running: JobStatus | None = None
    waiting: int
    waiting_yours: int
    max_waiting: int
    max_waiting_per_owner: int
    max_pixels: int
    max_images: int
    worker_alive: bool = Field(True, description="the job worker is running; false: jobs wait until it restarts "
                                                 "(the next submit restarts it)")
    worker_error: str | None = Field(None, description="why jobs are not running, for people (a stopped worker, "
                                                       "a full disk, a shutdown); null when all is well")
    worker_restarts: int = Field(0, description="times the job worker was restarted after a crash")
    jobs_held_back: str | None = Field(None, description="why waiting jobs are held back (too little free disk "
                                                         "space), if they are")
    unrecorded_updates: int = Field(0, description="job updates not yet written to the job database (retried)")


def timestamp(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, tz=timezone.utc) if value is not None else None
