"""Job handlers: what the worker does for each job kind.

Expected failures (a bad model file, a size the family cannot do) become :class:`JobFailure`
with the user-facing message; the queue records them on the job.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from modules.jobs.progress import JobControl
from modules.jobs.queue import Handler, Job, JobFailure

if TYPE_CHECKING:
    from modules.app_context import AppContext


def _txt2img(ctx: "AppContext", job: Job, control: JobControl) -> Any:
    from modules.generation.samplers import SamplerError
    from modules.generation.txt2img import OutputOptions, run_txt2img
    from modules.generation.validation import InvalidRequestError
    from modules.models.errors import ModelLoadError

    req = job.request
    settings = ctx.settings.current
    try:
        control.progress.text = "loading model"
        active = ctx.models.ensure_loaded(req.checkpoint or settings.sd_model_checkpoint or None)
        output = OutputOptions(
            save=req.save_images and settings.samples_save,
            outdir=ctx.paths.output_dir("txt2img"),
            write_infotext=settings.enable_pnginfo,
            add_model_hash=settings.add_model_hash_to_info,
            add_model_name=settings.add_model_name_to_info,
            add_version=settings.add_version_to_infotext,
        )
        return run_txt2img(req, active, control, output)
    except (ModelLoadError, InvalidRequestError, SamplerError) as exc:
        raise JobFailure(str(exc)) from None


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


def build_handlers(get_ctx: Callable[[], "AppContext"]) -> dict[str, Handler]:
    """Handlers keyed by job kind; ``get_ctx`` returns the context once it exists."""
    return {
        "txt2img": lambda job, control: _txt2img(get_ctx(), job, control),
        "load_model": lambda job, control: _load_model(get_ctx(), job, control),
    }
