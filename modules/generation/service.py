"""Submitting generation jobs: the one entry point used by the UI, the APIs and scripts.

``submit`` checks what can be checked before queueing (sampler, size against the loaded
family, the checkpoint's existence) so a bad request is refused at once with a clear message
instead of failing later in the queue.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modules.generation.fitting import fit_to_model
from modules.generation.requests import Img2ImgRequest, LoadModelRequest, Txt2ImgRequest
from modules.generation.samplers import resolve_sampler
from modules.generation.validation import InvalidRequestError, check_sampler_for_model, check_task, resolve_size
from modules.jobs.queue import DiskFullError, Job
from modules.models.errors import ModelLoadError

if TYPE_CHECKING:
    from modules.app_context import AppContext


def network_kinds(ctx: "AppContext") -> frozenset[str]:
    """The extra-network kinds (``<lora:...>``) this studio handles."""
    addons = getattr(ctx, "addons", None)
    return addons.network_kinds() if addons is not None else frozenset()


def prepared_networks(ctx: "AppContext", req: Txt2ImgRequest | Img2ImgRequest) -> list:
    """Check the prompt syntax and styles; the extra-network tags of the prompt (``<lora:name:w>``)."""
    from modules.generation.prompts import prepare_prompt_pair

    prepared = prepare_prompt_pair(req.prompt, req.negative_prompt, req.styles, getattr(ctx, "styles", None),
                                   req.steps, network_kinds(ctx))
    return prepared.networks


def check_addons(ctx: "AppContext", req: Txt2ImgRequest | Img2ImgRequest, networks: list) -> None:
    """Refuse before queueing: a LoRA, VAE, ControlNet model or preprocessor that is not installed."""
    addons = getattr(ctx, "addons", None)
    if addons is None:
        return
    from modules.generation.addons import check_request_addons

    check_request_addons(ctx.paths, addons.caches, req, addons.vae_choice(req, ctx.settings.current.sd_vae),
                         networks)


def precheck(ctx: "AppContext", req: Txt2ImgRequest) -> None:
    """Raise InvalidRequestError / SamplerError / ModelLoadError for a request that cannot run."""
    resolved = resolve_sampler(req.sampler_name, req.scheduler)
    check_addons(ctx, req, prepared_networks(ctx, req))
    active = ctx.models.active
    if req.checkpoint:
        info = ctx.models.resolve(req.checkpoint)  # raises ModelLoadError naming the checkpoint
        if active is None or active.info.path != info.path:
            return  # the family is known only after the switch; the job validates then
    if active is None:
        return
    check_task(active.model, "txt2img")
    fitted, _ = fit_to_model(req, active.model)
    resolve_size(fitted.width, fitted.height, active.model)
    check_sampler_for_model(resolved, active.model)


def _submit(ctx: "AppContext", request: Txt2ImgRequest | Img2ImgRequest | LoadModelRequest, owner: str | None,
            source: str) -> Job:
    """Queue ``request``. A disk too full to record it is refused with the queue's DiskFullError, whose
    message (shown as is in the page, 507 in the APIs) names the folder and the space needed."""
    from modules.jobs.disk_space import is_disk_full

    try:
        return ctx.queue.submit(request, owner=owner, source=source)
    except DiskFullError:
        raise
    except Exception as exc:
        if is_disk_full(exc):
            raise ctx.queue.space.explain(exc) from None
        raise


def _queue(ctx: "AppContext", req: Txt2ImgRequest | Img2ImgRequest, owner: str | None, source: str) -> Job:
    from modules.generation.previews import preview_every

    job = _submit(ctx, req, owner, source)
    job.control.preview_every = preview_every(ctx.settings.current)  # read by the sampler at each step
    return job


def submit_txt2img(ctx: "AppContext", req: Txt2ImgRequest, *, owner: str | None = None,
                   source: str = "internal") -> Job:
    precheck(ctx, req)
    return _queue(ctx, req, owner, source)


def precheck_img2img(ctx: "AppContext", req: Img2ImgRequest) -> None:
    """What can be refused before queueing an img2img/inpaint job: sampler, prompt syntax, checkpoint,
    unreadable or missing images, a sampler the loaded model cannot run."""
    from modules.generation.img2img import decode_request_image
    from modules.generation.kontext import check_kontext

    resolved = resolve_sampler(req.sampler_name, req.scheduler)
    check_addons(ctx, req, prepared_networks(ctx, req))
    if req.flux_kontext:
        check_kontext(req, None)
    if not req.init_images:
        raise InvalidRequestError("img2img needs an init image: upload one first")
    for index, data in enumerate(req.init_images):
        decode_request_image(data, f"init image {index + 1}")
    if req.mask:
        decode_request_image(req.mask, "mask")
    active = ctx.models.active
    if req.checkpoint:
        info = ctx.models.resolve(req.checkpoint)
        if active is None or active.info.path != info.path:
            return
    if active is not None:
        check_sampler_for_model(resolved, active.model)
        if req.flux_kontext:
            check_kontext(req, active.model)


def submit_img2img(ctx: "AppContext", req: Img2ImgRequest, *, owner: str | None = None,
                   source: str = "internal") -> Job:
    precheck_img2img(ctx, req)
    return _queue(ctx, req, owner, source)


def submit_model_switch(ctx: "AppContext", reference: str, *, owner: str | None = None) -> Job:
    info = ctx.models.resolve(reference)
    return _submit(ctx, LoadModelRequest(checkpoint=str(info.path)), owner, "internal")


__all__ = ["precheck", "precheck_img2img", "submit_txt2img", "submit_img2img", "submit_model_switch",
           "DiskFullError", "InvalidRequestError", "ModelLoadError"]
