"""The image-generation job kinds: txt2img, img2img (inpaint, outpaint, Kontext) and img2img over a folder.

Each is declared once here (request, precheck, run, result description) and registered through
:mod:`modules.job_kinds`. A run loads the requested model, then calls its runner with the studio's
styles, the job's add-on hooks (LoRA, embeddings, VAE, ControlNet) inside its VAE scope, refiners (the
model manager) and upscalers.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Callable, Sequence

from modules.folder_access import roots_of
from modules.generation import prechecks
from modules.generation.batch_inputs import precheck_batch
from modules.generation.requests import Img2ImgBatchRequest, Img2ImgRequest, Txt2ImgRequest
from modules.generation.sampling.samplers import SamplerError
from modules.generation.validation import InvalidRequestError
from modules.images.upscalers import UpscalerError
from modules.backends.choice import backend_for
from modules.backends.memory import MemoryPlan, PeakMemory, apply_plan, mode_from, resolve_mode
from modules.backends.registry import BackendError, get_backend
from modules.backends.scope import backend_scope
from modules.backends.token_merging import check_token_merging, ratios_for, token_merging_hook
from modules.backends.tuning import check_tuning
from modules.jobs.kinds import JobKind
from modules.jobs.model import Job
from modules.jobs.progress import JobControl
from modules.models.errors import ModelLoadError
from modules.scripts.host import SCRIPT_ERRORS

if TYPE_CHECKING:
    from modules.app_context import AppContext

#: what means "this request cannot run" for a generation job (shown to the user as is)
GENERATION_ERRORS: tuple[type[Exception], ...] = (ModelLoadError, InvalidRequestError, SamplerError, UpscalerError,
                                                  BackendError, *SCRIPT_ERRORS)


def output_options(ctx: "AppContext", job: Job, kind: str) -> Any:
    from modules.generation.runners.txt2img import OutputOptions

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


def generate_once(ctx: "AppContext", req: Any, control: Any, output: Any, runner: Callable[..., Any],
                  extra_hooks: Sequence[Any] = ()) -> Any:
    """One generation: load the model ``req`` names, then run ``runner`` with the studio's styles, the
    request's add-on hooks (then ``extra_hooks``) inside its VAE scope, refiners and upscalers."""
    settings = ctx.settings.current
    if getattr(req, "randn_source", "") is None:  # the setting decides (and the infotext says which)
        req = req.model_copy(update={"randn_source": settings.randn_source})
    control.progress.text = "loading model"
    active = ctx.models.ensure_loaded(req.checkpoint or settings.sd_model_checkpoint or None)
    hooks = [*(ctx.addons.hooks_for(req, settings.sd_vae) if ctx.addons else ()), *extra_hooks]
    scope = ctx.addons.job_scope(active.model, req, settings.sd_vae) if ctx.addons else contextlib.nullcontext()
    backend, precision = backend_for(ctx, active.info.name)
    check_tuning(get_backend(backend), settings)  # quantization / compile: PyTorch only
    merging = ratios_for(req, settings)
    check_token_merging(get_backend(backend), (merging.first, merging.hires))  # PyTorch only
    if merging.active:  # last: around the pipeline the other hooks leave, after the memory plan's processors
        hooks.append(token_merging_hook(merging))
    plan = memory_plan(ctx, active)
    peak = PeakMemory()
    with scope, backend_scope(ctx.backends, active, backend, req, precision), peak.measure(plan.device):
        apply_plan(active.model.pipeline, plan, plan.device)
        result = runner(req, active, control, output, styles=ctx.styles, hooks=hooks, refiners=ctx.models,
                        upscalers=ctx.upscalers)
    if hasattr(result, "peak_memory_mb"):
        tuned = active.tuning.describe() if active.tuning is not None else ""
        result.memory_mode = plan.describe() + (f"; {tuned}" if tuned else "") + \
            (f"; token merging {merging.first:g}" if merging.first else "")
        result.peak_memory_mb = peak.peak_mb
        result.warnings.extend(note for note in plan.notes if note not in result.warnings)
    return result


def memory_plan(ctx: "AppContext", active: Any) -> Any:
    """The memory mode and switches for a job on ``active`` (settings and --lowvram/--medvram)."""
    settings = ctx.settings.current
    pipe = active.model.pipeline
    device = str(getattr(pipe, "device", "cpu"))
    unet = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
    size = sum(p.numel() * p.element_size() for p in unet.parameters()) if unet is not None else 0
    free = None
    if device.startswith("cuda"):
        import torch

        free = torch.cuda.mem_get_info()[0]
    mode, note = resolve_mode(mode_from(ctx.flags, settings), device, size, free)
    return MemoryPlan(mode, vae_slicing=settings.vae_slicing, vae_tiling=settings.vae_tiling,
                      attention_slicing=settings.attention_slicing, notes=[note] if note else [], device=device)


def generate(ctx: "AppContext", job: Job, control: JobControl, runner: Callable[..., Any], outputs: str) -> Any:
    """A generation job: with the studio's scripts (the request's selected script, the always-on ones and
    the callbacks: :mod:`modules.scripts`) when it has them, else :func:`generate_once`."""
    output = output_options(ctx, job, outputs)
    if ctx.scripts is None:
        return generate_once(ctx, job.request, control, output, runner)
    tab = "txt2img" if outputs == "txt2img" else "img2img"
    return ctx.scripts.run(job.request, tab, control, output,
                           lambda req, ctl, out, hooks: generate_once(ctx, req, ctl, out, runner, hooks),
                           grids_dir=ctx.paths.output_dir(f"{tab}-grids"), user_errors=GENERATION_ERRORS)


def _txt2img(ctx: "AppContext", job: Job, control: JobControl) -> Any:
    from modules.generation.runners.txt2img import run_txt2img

    return generate(ctx, job, control, run_txt2img, "txt2img")


def _img2img(ctx: "AppContext", job: Job, control: JobControl) -> Any:
    from modules.generation.runners.img2img import run_img2img

    return generate(ctx, job, control, run_img2img, "img2img")


def _img2img_batch(ctx: "AppContext", job: Job, control: JobControl) -> Any:
    from functools import partial

    from modules.generation.runners.img2img_batch import run_img2img_batch

    # folders only under the data dir and the --allowed-dir roots (modules.folder_access)
    return generate(ctx, job, control, partial(run_img2img_batch, roots=roots_of(ctx)), "img2img")


def describe_batch(result: Any) -> dict[str, Any] | None:
    """A batch's generation description plus its summary (done, failed and why)."""
    described = describe_generation(result)
    summary = getattr(result, "batch", None)
    if described is not None and summary is not None:
        described["batch"] = summary.as_dict()
    return described


def describe_generation(result: Any) -> dict[str, Any] | None:
    """What the job store keeps of a generation result: paths, seeds and infotexts; never pixels."""
    if not (hasattr(result, "infotexts") and hasattr(result, "seeds")):
        return None
    paths = list(getattr(result, "paths", []))
    images = [{"path": str(path) if path else None, "seed": seed, "subseed": subseed, "infotext": text}
              for path, seed, subseed, text in zip(paths + [None] * len(result.seeds), result.seeds,
                                                   result.subseeds, result.infotexts)]
    return {"images": images, "width": result.width, "height": result.height,
            "interrupted": bool(result.interrupted), "seconds": round(float(result.seconds), 3),
            "sampler_name": result.sampler_name, "schedule_label": result.schedule_label,
            "model_name": result.model_name, "model_hash": result.model_hash,
            "job_timestamp": result.job_timestamp, "memory_mode": getattr(result, "memory_mode", ""),
            "peak_memory_mb": getattr(result, "peak_memory_mb", None)}


TXT2IMG = JobKind(
    name="txt2img", request=Txt2ImgRequest, run=_txt2img, precheck=prechecks.precheck,
    summary="Generate images from text. The images are always saved (results are read back from disk).",
    describe=describe_generation, keeps_outputs=True, previews=True, user_errors=GENERATION_ERRORS)

IMG2IMG = JobKind(
    name="img2img", request=Img2ImgRequest, run=_img2img, precheck=prechecks.precheck_img2img,
    summary="Transform images (``init_images`` as base64); with ``mask`` inpaint. The images are always saved.",
    describe=describe_generation, keeps_outputs=True, previews=True, user_errors=GENERATION_ERRORS)

IMG2IMG_BATCH = JobKind(
    name="img2img_batch", request=Img2ImgBatchRequest, run=_img2img_batch, precheck=precheck_batch, api=False,
    summary="img2img over many images (uploaded, or a folder under the data dir or an --allowed-dir root).",
    describe=describe_batch, previews=True, user_errors=GENERATION_ERRORS)

KINDS = (TXT2IMG, IMG2IMG, IMG2IMG_BATCH)
