"""A generation job with scripts: the ``p`` hooks see, the hooks on the existing seams, faults isolated.

:func:`run_generation` is what the txt2img and img2img job kinds call. It gives every always-on script of
the tab (with its arguments from ``request.alwayson_scripts``, else its defaults) and the selected script
(``request.script``) a :class:`RunningJob`, then:

1. ``before_process`` and ``process`` of the always-on scripts (each may replace ``p.request``);
2. the selected script's ``run(p, args)``, or one ``p.process(p.request)``;
   each ``p.process`` runs the generation (``generate_once``: load the model, add-ons, runner) with
   a :class:`~modules.generation.addons.hooks.SamplingHook` that calls ``process_batch`` before each
   batch's first pass and the ``step`` callbacks after every step, and with
   :class:`~modules.generation.results.ImageHooks` that call ``postprocess_image`` and the
   ``before_image_saved``/``image_saved`` callbacks around each saved image;
3. ``postprocess`` with the result.

A hook or callback that raises is reported (log, Extensions tab, the job's warnings) and the job goes on;
a selectable script that raises after it made images returns those images with the error as a warning.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from modules.scripts.callbacks import CallbackRegistry, ImageSaved, StepInfo
from modules.scripts.script import BatchInfo, ImageInfo, Script

if TYPE_CHECKING:
    from PIL import Image

    from modules.generation.addons.hooks import SamplingContext, SamplingHook
    from modules.generation.requests import GenerationRequest
    from modules.generation.results import GenerationResult, OutputOptions
    from modules.jobs.progress import JobControl

log = logging.getLogger(__name__)

#: ``generate_once(request, control, output, extra_hooks) -> GenerationResult``: one generation as the job
#: kind runs it (the model for ``request.checkpoint`` loaded, the add-on hooks and VAE scope, the runner)
GenerateOnce = Callable[["GenerationRequest", "JobControl", "OutputOptions", Sequence["SamplingHook"]],
                        "GenerationResult"]

#: the first pass of a batch (``process_batch`` runs there, not again in hires or refiner passes)
FIRST_PASS_TASKS = ("txt2img", "img2img", "inpaint")


class CellControl:
    """A :class:`~modules.jobs.progress.JobControl` seen by one of several generations of a job (the cells
    of a grid): their batches count as one job's, so the bar and ETA run over the whole grid."""

    def __init__(self, control: "JobControl", index: int, count: int, label: str) -> None:
        self._control, self._index, self._count, self._label = control, index, count, label
        self._batches = 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._control, name)

    def begin(self, job_count: int, total_steps: int, text: str = "") -> None:
        self._batches = max(1, job_count)
        shown = f"{self._label} {self._index + 1}/{self._count}" + (f" · {text}" if text else "")
        progress = self._control.progress
        started = progress.started_at
        self._control.begin(self._count * self._batches, total_steps, text=shown)
        if self._index:  # the grid's clock keeps running from its first cell
            progress.started_at = started
            self._control.begin_batch(self._index * self._batches)

    def begin_batch(self, job_no: int) -> None:
        self._control.begin_batch(self._index * self._batches + job_no)


@dataclass
class RunningJob:
    """``p``: what a script's hooks see of the running generation job (see :class:`~modules.scripts.script.ScriptJob`)."""

    request: "GenerationRequest"
    tab: str
    control: "JobControl"
    callbacks: CallbackRegistry
    generate_once: GenerateOnce
    output: "OutputOptions"
    alwayson: list[tuple[Script, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    grids_dir: Path | None = None
    results: list["GenerationResult"] = field(default_factory=list)
    #: the errors that mean "this request cannot run" (a script's run raising one fails the job as is)
    user_errors: tuple[type[Exception], ...] = ()
    _cells: tuple[int, int, str] | None = None

    # --- for scripts ---------------------------------------------------------------------------------

    def process(self, request: "GenerationRequest", *, label: str = "") -> "GenerationResult":
        control: Any = self.control
        if self._cells is not None:
            index, count, name = self._cells
            control = CellControl(self.control, index, count, name)
            self._cells = (index + 1, count, name)
        output = replace(self.output, image_hooks=_ImageHooks(self))
        result = self.generate_once(request, control, output, [_ScriptsHook(self)])
        self.results.append(result)
        return result

    @contextlib.contextmanager
    def cells(self, count: int, label: str = "cell") -> Iterator[None]:
        """Within this block, ``count`` calls of :meth:`process` share one progress bar ("cell N of M")."""
        previous, self._cells = self._cells, (0, max(1, count), label)
        try:
            yield
        finally:
            self._cells = previous

    def save_grid(self, image: "Image.Image", infotext: str, *, seed: int = 0) -> Path | None:
        """Save a grid image (with its infotext) in the tab's grids folder; None when saving is off."""
        from modules.images.saving import save_generated_image

        if not (self.output.save and self.grids_dir is not None):
            return None
        if self.output.write_infotext:
            image.info["parameters"] = infotext
        infotext = self.callbacks.fire("before_image_saved", ImageSaved(image, infotext, kind="grid"),
                                       warnings=self.warnings).infotext
        path = save_generated_image(image, outdir=self.grids_dir, seed=seed,
                                    infotext=infotext if self.output.write_infotext else "")
        self.callbacks.fire("image_saved", ImageSaved(image, infotext, kind="grid", path=path), warnings=self.warnings)
        return path

    # --- for the runtime -------------------------------------------------------------------------------

    def call(self, script: Script, hook: str, *args: Any) -> bool:
        """Call ``script.<hook>(self, *args)``; a failure is reported and False returned."""
        try:
            getattr(script, hook)(self, *args)
            return True
        except Exception as exc:  # noqa: BLE001 - a script's fault must not lose the job
            self.callbacks.report(script.source if script.source != "built-in" else script.title,
                                  f"{script.title}.{hook}", exc, warnings=self.warnings)
            return False


class _ScriptsHook:
    """The scripts' place on the :data:`~modules.generation.addons.hooks.SamplingHook` seam."""

    def __init__(self, job: RunningJob) -> None:
        self.job = job

    @contextlib.contextmanager
    def __call__(self, ctx: "SamplingContext") -> Iterator[None]:
        job = self.job
        if ctx.task in FIRST_PASS_TASKS:
            batch = BatchInfo(batch_index=ctx.batch_index, prompts=ctx.prompts, negative_prompts=ctx.negatives,
                              seeds=list(ctx.seeds), task=ctx.task, sampling=ctx)
            for script, args in job.alwayson:
                job.call(script, "process_batch", args, batch)
        if job.callbacks.has("step"):
            total = int(ctx.call_kwargs.get("num_inference_steps") or 0)

            def on_step(step: int, expected: int, timestep: Any, latents: Any) -> None:
                job.callbacks.fire("step", StepInfo(step=step, total=expected or total, timestep=timestep,
                                                    latents=latents, task=ctx.task, batch_index=ctx.batch_index),
                                   warnings=job.warnings)

            ctx.step_callbacks.append(on_step)
        yield


class _ImageHooks:
    """:class:`~modules.generation.results.ImageHooks` for one job: scripts, then the save callbacks."""

    def __init__(self, job: RunningJob) -> None:
        self.job = job

    def postprocess_image(self, image: "Image.Image", *, seed: int, prompt: str,
                          params: dict[str, Any]) -> "Image.Image":
        info = ImageInfo(image=image, seed=seed, prompt=prompt, infotext=params)
        for script, args in self.job.alwayson:
            self.job.call(script, "postprocess_image", args, info)
        return info.image

    def before_save(self, image: "Image.Image", infotext: str) -> str:
        params = self.job.callbacks.fire("before_image_saved", ImageSaved(image, infotext, kind=self.job.tab),
                                         warnings=self.job.warnings)
        return params.infotext if isinstance(params.infotext, str) else infotext

    def after_save(self, image: "Image.Image", infotext: str, path: Path | None) -> None:
        self.job.callbacks.fire("image_saved", ImageSaved(image, infotext, kind=self.job.tab, path=path),
                                warnings=self.job.warnings)


def merge_results(results: list["GenerationResult"]) -> "GenerationResult":
    """One result holding the images of several (what a script that failed half-way still returns)."""
    from modules.generation.results import GenerationResult

    if not results:
        return GenerationResult()
    merged = replace(results[0], images=[], infotexts=[], paths=[], seeds=[], subseeds=[], prompts=[],
                     negative_prompts=[], warnings=[])
    for result in results:
        for name in ("images", "infotexts", "paths", "seeds", "subseeds", "prompts", "negative_prompts", "warnings"):
            getattr(merged, name).extend(getattr(result, name))
        merged.interrupted = merged.interrupted or result.interrupted
        merged.seconds += result.seconds if result is not results[0] else 0.0
    return merged


def run_generation(job: RunningJob, selected: tuple[Script, Any] | None) -> "GenerationResult":
    """Run a generation job with its scripts (see the module docstring)."""
    for hook in ("before_process", "process"):
        for script, args in job.alwayson:
            job.call(script, hook, args)
    if selected is None:
        result = job.process(job.request)
    else:
        script, args = selected
        try:
            result = script.run(job, args)
        except Exception as exc:
            if not job.results or isinstance(exc, job.user_errors):
                raise
            job.callbacks.report(script.title, f"{script.title}.run", exc, warnings=job.warnings)
            result = merge_results(job.results)
    for script, args in job.alwayson:
        job.call(script, "postprocess", args, result)
    for warning in job.warnings:
        if warning not in result.warnings:
            result.warnings.append(warning)
    return result
