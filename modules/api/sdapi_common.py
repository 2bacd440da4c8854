"""What the A1111-compatible routes share: who the caller is, the one way they queue a job and wait for it,
how a refused submit or a failed job is answered, and A1111's ``info`` JSON (``Processed.js()``).

Used by :mod:`modules.api.sdapi` (txt2img, progress), :mod:`modules.api.sdapi_img2img`,
:mod:`modules.api.sdapi_images`, :mod:`modules.api.sdapi_listings`, the ControlNet routes and the
native job API, none of which import each other.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Sequence

from modules.api.errors import ApiError
from modules.jobs.model import (DiskFullError, IdempotencyConflictError, Job, JobState, LimitExceededError,
                                QueueFullError)
from modules.version import VERSION

if TYPE_CHECKING:
    from modules.app_context import AppContext
    from modules.generation.runners.txt2img import GenerationResult

ANONYMOUS = "sdapi-anonymous"


def sdapi_owner(principal: str | None) -> str:
    return principal or ANONYMOUS


def raise_for_submit_error(exc: Exception, user_errors: tuple[type[Exception], ...] = ()) -> None:
    """Map a refused submit to its HTTP answer: the known refusals to their status (an unknown script or bad
    script arguments: 422, as A1111 answers an unknown ``script_name``), any other of the job kind's
    ``user_errors`` to 400; re-raise the rest."""
    from modules.generation.sampling.samplers import SamplerError
    from modules.generation.validation import InvalidRequestError
    from modules.images.extras_job import ExtrasImageError
    from modules.images.upscale import UpscaleError, UpscaleTooLarge
    from modules.images.upscalers import UpscalerError
    from modules.models.errors import ModelLoadError
    from modules.scripts.registry import UnknownScriptError
    from modules.scripts.script import ScriptArgsError
    from modules.understanding.interrogate import InterrogatorMissing, UnknownInterrogateModel
    from modules.understanding.interrogate_job import InterrogateImageError

    if isinstance(exc, SamplerError):
        raise ApiError(400, str(exc), "SamplerNotFound") from None
    if isinstance(exc, UnknownScriptError):
        raise ApiError(422, str(exc), "ScriptNotFound") from None
    if isinstance(exc, ScriptArgsError):
        raise ApiError(422, str(exc), "ScriptError") from None
    if isinstance(exc, (ExtrasImageError, InterrogateImageError)):
        raise ApiError(400, str(exc), "InvalidImage") from None
    if isinstance(exc, UpscaleTooLarge):
        raise ApiError(413, str(exc), "LimitExceeded") from None
    if isinstance(exc, (InterrogatorMissing, UnknownInterrogateModel)):
        raise ApiError(404, str(exc), "ModelNotFound") from None
    if isinstance(exc, UpscaleError):
        raise ApiError(400, str(exc), "InvalidRequest") from None
    if isinstance(exc, (InvalidRequestError, UpscalerError)):
        raise ApiError(400, str(exc), "InvalidRequest") from None
    if isinstance(exc, ModelLoadError):
        raise ApiError(404, str(exc), "ModelNotFound") from None
    if isinstance(exc, QueueFullError):
        raise ApiError(429, str(exc), "QueueFull") from None
    if isinstance(exc, DiskFullError):
        raise ApiError(507, str(exc), "InsufficientStorage") from None
    if isinstance(exc, LimitExceededError):
        raise ApiError(413, str(exc), "LimitExceeded") from None
    if isinstance(exc, IdempotencyConflictError):
        raise ApiError(409, str(exc), "IdempotencyConflict") from None
    if user_errors and isinstance(exc, user_errors):
        raise ApiError(400, str(exc), "InvalidRequest") from None
    raise exc


def processed_info(req: Any, result: "GenerationResult", denoising_strength: float | None = None,
                   warnings: Sequence[str] = ()) -> str:
    """A1111's ``Processed.js()``: the keys and their order are what clients parse. ``warnings`` (what the
    request asked for and did not get, :mod:`modules.api.sdapi_notes`, then the job's own) come last."""
    plan = result.seed_plan
    info = {
        "prompt": req.prompt,
        "all_prompts": result.prompts,
        "negative_prompt": req.negative_prompt,
        "all_negative_prompts": result.negative_prompts,
        "seed": result.seeds[0] if result.seeds else (plan.seed if plan else req.seed),
        "all_seeds": result.seeds,
        "subseed": result.subseeds[0] if result.subseeds else (plan.subseed if plan else req.subseed),
        "all_subseeds": result.subseeds,
        "subseed_strength": req.subseed_strength,
        "width": result.width,
        "height": result.height,
        "sampler_name": result.sampler_name,
        "cfg_scale": req.cfg_scale,
        "steps": req.steps,
        "batch_size": req.batch_size,
        "restore_faces": False,
        "face_restoration_model": None,
        "sd_model_name": result.model_name,
        "sd_model_hash": result.model_hash,
        "sd_vae_name": None,
        "sd_vae_hash": None,
        "seed_resize_from_w": req.seed_resize_from_w,
        "seed_resize_from_h": req.seed_resize_from_h,
        "denoising_strength": denoising_strength,
        "extra_generation_params": {"Schedule type": result.schedule_label},
        "index_of_first_image": 0,
        "infotexts": result.infotexts,
        "styles": req.styles,
        "job_timestamp": result.job_timestamp,
        "clip_skip": result.clip_skip or req.clip_skip,
        "is_using_inpainting_conditioning": False,
        "version": VERSION,
        "warnings": [*warnings, *result.warnings],
    }
    return json.dumps(info, default=lambda o: None)


def encoded_images(result: "GenerationResult") -> list[str]:
    """The result's images as raw base64 PNGs with their infotexts; every image, also one without an infotext
    (a script's grid may come first without one)."""
    from modules.images.codec import encode_png_base64

    texts = list(result.infotexts)
    return [encode_png_base64(img, texts[i] if i < len(texts) else "") for i, img in enumerate(result.images)]


def finished_result(job: Job) -> Any:
    if job.state is JobState.FAILED:
        if job.out_of_space:
            raise ApiError(507, job.error or "no space left on the device", "InsufficientStorage")
        raise ApiError(422 if job.user_error else 500, job.error or "the job failed",
                       "JobFailed" if job.user_error else "InternalError")
    if job.state is JobState.CANCELLED and job.result is None:
        raise ApiError(409, job.error or "the job was cancelled", "Cancelled")
    return job.result


def run_sdapi_job(ctx: "AppContext", req: Any, principal: str | None) -> Job:
    """Check (the kind's precheck), queue (owned by the caller, recorded) and wait for one job; a refused
    request is answered with its 4xx."""
    from modules.jobs.submit import submit_job

    try:
        job = submit_job(ctx, req, owner=sdapi_owner(principal), source="sdapi")
    except Exception as exc:  # noqa: BLE001 - mapped to 4xx or re-raised
        raise_for_submit_error(exc, ctx.kinds.of(req).user_errors)
    ctx.queue.wait(job.id)
    return job


def first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return f"{where}: {first.get('msg')}" if where else str(first.get("msg"))
    return str(exc)
