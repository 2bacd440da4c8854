"""The ``load_model`` job kind: switch the loaded checkpoint on the queue, like every job that touches the device.

The precheck resolves the reference (a title, a file name, a path) to the catalog's checkpoint, so an
unknown one is refused before queueing and the queued request names the file itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from modules.jobs.kinds import JobKind
from modules.jobs.model import Job
from modules.jobs.progress import JobControl
from modules.models.errors import ModelLoadError

if TYPE_CHECKING:
    from modules.app_context import AppContext


class LoadModelRequest(BaseModel):
    """Switch the loaded checkpoint (runs on the queue like any job that touches the device)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["load_model"] = "load_model"
    checkpoint: str


def _precheck(ctx: "AppContext", request: LoadModelRequest) -> LoadModelRequest:
    return LoadModelRequest(checkpoint=str(ctx.models.resolve(request.checkpoint).path))


def _run(ctx: "AppContext", job: Job, control: JobControl) -> Any:
    control.begin(1, 1, text=f"loading {job.request.checkpoint}")
    info = ctx.models.resolve(job.request.checkpoint)
    active = ctx.models.load(info)
    ctx.settings.update({"sd_model_checkpoint": ctx.catalog.title(info),
                         "sd_checkpoint_hash": active.sha256 or ""}, allow_read_only=True)
    control.step(1)
    return active


def _describe(result: Any) -> dict[str, Any] | None:
    if not hasattr(result, "info"):
        return None
    return {"checkpoint": str(result.info.path), "sha256": result.sha256}


LOAD_MODEL = JobKind(
    name="load_model", request=LoadModelRequest, run=_run, precheck=_precheck, describe=_describe,
    summary="Switch the loaded checkpoint (runs on the queue like every job that touches the device).",
    user_errors=(ModelLoadError,))

KINDS = (LOAD_MODEL,)


def switch_model(ctx: "AppContext", reference: str, *, owner: str | None = None) -> Job:
    """Queue a switch to the checkpoint ``reference`` names (raises ModelLoadError for an unknown one)."""
    from modules.jobs.submit import submit_job

    return submit_job(ctx, LoadModelRequest(checkpoint=reference), owner=owner)
