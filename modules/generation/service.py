"""Submitting generation jobs: the one entry point used by the UI, the APIs and scripts.

``submit`` checks what can be checked before queueing (sampler, size against the loaded
family, the checkpoint's existence) so a bad request is refused at once with a clear message
instead of failing later in the queue.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modules.generation.requests import LoadModelRequest, Txt2ImgRequest
from modules.generation.samplers import resolve_sampler
from modules.generation.validation import InvalidRequestError, check_sampler_for_model, check_task, resolve_size
from modules.jobs.queue import Job
from modules.models.errors import ModelLoadError

if TYPE_CHECKING:
    from modules.app_context import AppContext


def precheck(ctx: "AppContext", req: Txt2ImgRequest) -> None:
    """Raise InvalidRequestError / SamplerError / ModelLoadError for a request that cannot run."""
    from modules.generation.txt2img import prepare_prompts

    resolved = resolve_sampler(req.sampler_name, req.scheduler)
    prepare_prompts(req, getattr(ctx, "styles", None))
    active = ctx.models.active
    if req.checkpoint:
        info = ctx.models.resolve(req.checkpoint)  # raises ModelLoadError naming the checkpoint
        if active is None or active.info.path != info.path:
            return  # the family is known only after the switch; the job validates then
    if active is None:
        return
    check_task(active.model, "txt2img")
    resolve_size(req.width, req.height, active.model)
    check_sampler_for_model(resolved, active.model)


def submit_txt2img(ctx: "AppContext", req: Txt2ImgRequest, *, owner: str | None = None) -> Job:
    precheck(ctx, req)
    return ctx.queue.submit(req, owner=owner)


def submit_model_switch(ctx: "AppContext", reference: str, *, owner: str | None = None) -> Job:
    info = ctx.models.resolve(reference)
    return ctx.queue.submit(LoadModelRequest(checkpoint=str(info.path)), owner=owner)


__all__ = ["precheck", "submit_txt2img", "submit_model_switch", "InvalidRequestError", "ModelLoadError"]
