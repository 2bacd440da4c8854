"""The prechecks of the generation job kinds: what can be refused before queueing (sampler, prompt syntax,
add-ons, size against the loaded family, the checkpoint's existence), so a bad request is refused at once
with a clear message instead of failing later in the queue. The UI, both APIs and the worker call the same
check, through the job-kind registry (:mod:`modules.generation.job_kinds`, :mod:`modules.jobs.submit`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modules.generation.fitting import fit_to_model
from modules.generation.requests import Img2ImgRequest, Txt2ImgRequest
from modules.generation.sampling.samplers import resolve_sampler
from modules.generation.validation import InvalidRequestError, check_sampler_for_model, check_task, resolve_size
from modules.models.errors import ModelLoadError

if TYPE_CHECKING:
    from modules.app_context import AppContext
    from modules.models.loader import LoadedModel


def network_kinds(ctx: "AppContext") -> frozenset[str]:
    """The extra-network kinds (``<lora:...>``) this studio handles."""
    addons = getattr(ctx, "addons", None)
    return addons.network_kinds() if addons is not None else frozenset()


def prepared_networks(ctx: "AppContext", req: Txt2ImgRequest | Img2ImgRequest) -> list:
    """Check the prompt syntax and styles; the extra-network tags of the prompt (``<lora:name:w>``)."""
    from modules.generation.prompts.prepared import prepare_prompt_pair

    prepared = prepare_prompt_pair(req.prompt, req.negative_prompt, req.styles, getattr(ctx, "styles", None),
                                   req.steps, network_kinds(ctx))
    return prepared.networks


def check_addons(ctx: "AppContext", req: Txt2ImgRequest | Img2ImgRequest, networks: list) -> None:
    """Refuse before queueing: a LoRA, VAE, ControlNet model or preprocessor that is not installed."""
    addons = getattr(ctx, "addons", None)
    if addons is None:
        return
    from modules.generation.addons.caches import check_request_addons

    check_request_addons(ctx.paths, addons.caches, req, addons.vae_choice(req, ctx.settings.current.sd_vae),
                         networks)


def _model_to_check(ctx: "AppContext", req: Txt2ImgRequest | Img2ImgRequest) -> "LoadedModel | None":
    """The loaded model a request will run on, or None when it names another checkpoint (its family is known
    only after the switch: the worker checks again then). An unknown checkpoint raises ModelLoadError."""
    active = ctx.models.active
    if req.checkpoint:
        info = ctx.models.resolve(req.checkpoint)
        if active is None or active.info.path != info.path:
            return None
    return active.model if active is not None else None


def check_backend(ctx: "AppContext", req: Txt2ImgRequest | Img2ImgRequest) -> None:
    """Refuse what the model's backend cannot run (LoRA or ControlNet on an exported UNet), naming PyTorch."""
    from modules.backends.choice import backend_for
    from modules.backends.registry import get_backend
    from modules.backends.scope import check_request

    if getattr(ctx, "backends", None) is None:
        return
    active = ctx.models.active
    backend, _ = backend_for(ctx, req.checkpoint or (active.info.name if active is not None else None))
    check_request(get_backend(backend), req)
    from modules.backends.tuning import check_tuning

    check_tuning(get_backend(backend), ctx.settings.current)  # quantization / compile: PyTorch only
    from modules.backends.token_merging import check_token_merging, ratios_for

    merging = ratios_for(req, ctx.settings.current)
    check_token_merging(get_backend(backend), (merging.first, merging.hires))  # PyTorch only


def precheck(ctx: "AppContext", req: Txt2ImgRequest) -> None:
    """Raise InvalidRequestError / SamplerError / ModelLoadError (or a script error) for a txt2img request
    that cannot run."""
    if getattr(ctx, "scripts", None) is not None:
        # an unknown script or bad script arguments, named; each request a script will run, checked as this one
        ctx.scripts.precheck(req, "txt2img", check=lambda cell: precheck(ctx, cell))
    resolved = resolve_sampler(req.sampler_name, req.scheduler)
    check_backend(ctx, req)
    check_addons(ctx, req, prepared_networks(ctx, req))
    model = _model_to_check(ctx, req)
    if model is None:
        return
    check_task(model, "txt2img")
    fitted, _ = fit_to_model(req, model)
    resolve_size(fitted.width, fitted.height, model)
    check_sampler_for_model(resolved, model)


def precheck_img2img(ctx: "AppContext", req: Img2ImgRequest) -> None:
    """What can be refused before queueing an img2img/inpaint job: add-ons, then the request against the
    model it will run on (:func:`modules.generation.runners.img2img.precheck_img2img`: images, seeds, prompt
    syntax, sampler, size, Kontext)."""
    from modules.generation.runners.img2img import precheck_img2img as precheck_against_model

    if getattr(ctx, "scripts", None) is not None:
        ctx.scripts.precheck(req, "img2img", check=lambda cell: precheck_img2img(ctx, cell))
    check_backend(ctx, req)
    check_addons(ctx, req, prepared_networks(ctx, req))
    precheck_against_model(req, _model_to_check(ctx, req), getattr(ctx, "styles", None), network_kinds(ctx))


__all__ = ["precheck", "precheck_img2img", "InvalidRequestError", "ModelLoadError"]
