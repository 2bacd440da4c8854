"""Job kinds: what the worker does for each, how its request is read back, what is kept of its result.

Expected failures (a bad model file, a size the family cannot do) become :class:`JobFailure`
with the user-facing message; the queue records them on the job.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Callable

from pydantic import BaseModel

from modules.jobs.model import Handler, Job, JobFailure
from modules.jobs.progress import JobControl

if TYPE_CHECKING:
    from modules.app_context import AppContext


def _output_options(ctx: "AppContext", job: Job, kind: str) -> Any:
    from modules.generation.txt2img import OutputOptions

    settings = ctx.settings.current
    req = job.request
    return OutputOptions(
        # native-API jobs always save: nothing finished may be lost, results are re-read from disk
        save=job.keep_outputs or (bool(getattr(req, "save_images", False)) and settings.samples_save),
        outdir=ctx.paths.output_dir(kind),
        write_infotext=settings.enable_pnginfo,
        add_model_hash=settings.add_model_hash_to_info,
        add_model_name=settings.add_model_name_to_info,
        add_version=settings.add_version_to_infotext,
    )


def _generation_errors() -> tuple[type[Exception], ...]:
    from modules.generation.samplers import SamplerError
    from modules.generation.validation import InvalidRequestError
    from modules.images.upscalers import UpscalerError
    from modules.models.errors import ModelLoadError

    return ModelLoadError, InvalidRequestError, SamplerError, UpscalerError


def _generate(ctx: "AppContext", job: Job, control: JobControl, runner: Callable[..., Any], outputs: str) -> Any:
    """Load the requested model, then run ``runner`` with the studio's styles, the job's add-on hooks
    (LoRA, embeddings, VAE, ControlNet) inside its VAE scope, refiners (the model manager) and upscalers."""
    req = job.request
    settings = ctx.settings.current
    try:
        control.progress.text = "loading model"
        active = ctx.models.ensure_loaded(req.checkpoint or settings.sd_model_checkpoint or None)
        hooks = ctx.addons.hooks_for(req, settings.sd_vae) if ctx.addons else ()
        scope = ctx.addons.job_scope(active.model, req, settings.sd_vae) if ctx.addons else contextlib.nullcontext()
        with scope:
            return runner(req, active, control, _output_options(ctx, job, outputs), styles=ctx.styles,
                          hooks=hooks, refiners=ctx.models, upscalers=ctx.upscalers)
    except _generation_errors() as exc:
        raise JobFailure(str(exc)) from None


def _txt2img(ctx: "AppContext", job: Job, control: JobControl) -> Any:
    from modules.generation.txt2img import run_txt2img

    return _generate(ctx, job, control, run_txt2img, "txt2img")


def _img2img(ctx: "AppContext", job: Job, control: JobControl) -> Any:
    from modules.generation.img2img import run_img2img

    return _generate(ctx, job, control, run_img2img, "img2img")


def _img2img_batch(ctx: "AppContext", job: Job, control: JobControl) -> Any:
    from modules.generation.img2img_batch import run_img2img_batch

    return _generate(ctx, job, control, run_img2img_batch, "img2img")


def _load_model(ctx: "AppContext", job: Job, control: JobControl) -> Any:
    from modules.models.errors import ModelLoadError

    control.begin(1, 1, text=f"loading {job.request.checkpoint}")
    try:
        info = ctx.models.resolve(job.request.checkpoint)
        active = ctx.models.load(info)
    except ModelLoadError as exc:
        raise JobFailure(str(exc)) from None
    ctx.settings.update({"sd_model_checkpoint": ctx.catalog.title(info),
                         "sd_checkpoint_hash": active.sha256 or ""}, allow_read_only=True)
    control.step(1)
    return active


def request_types() -> dict[str, type[BaseModel]]:
    """The request model of each job kind (to read persisted jobs back)."""
    from modules.generation.requests import Img2ImgBatchRequest, Img2ImgRequest, LoadModelRequest, Txt2ImgRequest

    return {"txt2img": Txt2ImgRequest, "load_model": LoadModelRequest, "img2img": Img2ImgRequest,
            "img2img_batch": Img2ImgBatchRequest}


def describe_result(kind: str, result: Any) -> dict[str, Any] | None:
    """What the job store keeps of a result: paths, seeds and infotexts; never pixels."""
    if hasattr(result, "infotexts") and hasattr(result, "seeds"):
        paths = list(getattr(result, "paths", []))
        images = [{"path": str(path) if path else None, "seed": seed, "subseed": subseed, "infotext": text}
                  for path, seed, subseed, text in zip(paths + [None] * len(result.seeds), result.seeds,
                                                       result.subseeds, result.infotexts)]
        return {"images": images, "width": result.width, "height": result.height,
                "interrupted": bool(result.interrupted), "seconds": round(float(result.seconds), 3),
                "sampler_name": result.sampler_name, "schedule_label": result.schedule_label,
                "model_name": result.model_name, "model_hash": result.model_hash,
                "job_timestamp": result.job_timestamp}
    if kind == "load_model" and hasattr(result, "info"):
        return {"checkpoint": str(result.info.path), "sha256": result.sha256}
    return None


def build_handlers(get_ctx: Callable[[], "AppContext"]) -> dict[str, Handler]:
    """Handlers keyed by job kind; ``get_ctx`` returns the context once it exists."""
    return {
        "txt2img": lambda job, control: _txt2img(get_ctx(), job, control),
        "load_model": lambda job, control: _load_model(get_ctx(), job, control),
        "img2img": lambda job, control: _img2img(get_ctx(), job, control),
        "img2img_batch": lambda job, control: _img2img_batch(get_ctx(), job, control),
    }
