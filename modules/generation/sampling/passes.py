"""One pipeline call ("pass") of a generation job: sampler, hooks, prompt encoding, progress, interrupt.

Every runner goes through :func:`run_pass` for each pass of each batch (txt2img first pass, img2img,
inpaint, hires second pass, refiner), so all of them share the sampler set-up, the extension hooks
(:mod:`modules.generation.addons.hooks`), A1111 prompt conditioning with prompt editing, and
progress/interrupt handling. Progress of a batch is one step counter over all its passes
(:class:`BatchProgress`), so a hires or refiner job reports one smooth 0..100 % per batch.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch

from modules.generation.addons.hooks import SamplingContext, SamplingHook
from modules.generation.sampling.pipeline_call import ARCHITECTURE_CALLS
from modules.generation.sampling.previews import latents_to_preview

if TYPE_CHECKING:
    from modules.generation.prompts.parser import ExtraNetworkCall
    from modules.generation.requests import GenerationRequest
    from modules.generation.sampling.samplers import ResolvedSampler
    from modules.jobs.progress import JobControl
    from modules.models.loader import LoadedModel


@dataclass
class BatchProgress:
    """Steps of one batch across its passes, reported to the job as one counter."""

    control: "JobControl"
    total: int
    done: int = 0

    def report(self, step_in_pass: int, preview: Callable[[], Any] | None = None) -> None:
        """Record progress; ``preview`` (decoded on demand) is attached every ``control.preview_every``
        steps (set from the ``show_progress_every_n_steps`` setting; 0: no live previews)."""
        step = min(self.done + step_in_pass, self.total)
        every = getattr(self.control, "preview_every", 1)
        self.control.step(step, preview if preview is not None and every > 0 and step % every == 0 else None)

    def finish_pass(self, steps_run: int) -> None:
        self.done = min(self.done + steps_run, self.total)
        self.control.step(self.done)

    @property
    def stopped(self) -> bool:
        return self.control.should_stop or self.control.should_skip_batch


@dataclass
class Pass:
    """What one pipeline call needs besides the prompts' encoding."""

    task: str
    model: "LoadedModel"
    pipe: Any
    sampler: "ResolvedSampler"
    prompts: list[str]
    negatives: list[str]
    seeds: list[int]
    batch_index: int
    steps: int                      # num_inference_steps given to the pipeline
    expected_steps: int             # steps the pipeline will actually run (progress, prompt editing)
    kwargs: dict[str, Any] = field(default_factory=dict)
    extra_networks: list["ExtraNetworkCall"] = field(default_factory=list)


def strength_steps(model: "LoadedModel", steps: int, strength: float) -> int:
    """How many steps an img2img pass runs for ``steps`` at ``strength``.

    A1111's ``sample_img2img``: ``t_enc = int(min(strength, 0.999) * steps)`` and the schedule's last
    ``t_enc + 1`` steps run, starting from level ``steps - t_enc - 1`` (so even a low strength runs one step).
    FLUX (not an A1111 family) keeps its pipeline's count; a strength of exactly 0 runs none (the image
    as it is, where A1111 would still run one step at the lowest noise level).
    """
    if strength <= 0:
        return 0
    if model.family.architecture == "flux":
        if strength >= 1.0:
            return steps
        return steps - int(max(steps - min(steps * strength, steps), 0))
    return min(int(min(strength, 0.999) * steps) + 1, steps)


def pipeline_strength(model: "LoadedModel", steps: int, strength: float) -> float:
    """The ``strength`` to give a diffusers img2img pipeline so that it runs :func:`strength_steps` steps
    from A1111's starting level (its ``get_timesteps`` runs ``int(steps * strength)``)."""
    if model.family.architecture == "flux" or strength >= 1.0:
        return strength
    return min(1.0, (strength_steps(model, steps, strength) + 0.5) / steps)


def switch_steps(steps: int, start: float, end: float | None) -> int:
    """Approximate step count between two schedule fractions (refiner switch-over; progress only)."""
    stop = 1.0 if end is None else end
    return max(1, round(steps * stop) - round(steps * start))


def set_scheduler(pipe: Any, model: "LoadedModel", sampler: "ResolvedSampler", seeds: Sequence[int],
                  rng: str = "CPU") -> None:
    """Install the sampler's scheduler on ``pipe``.

    The A1111 samplers draw their noise from each image's own seed stream (``seeds``, one per image, from
    the random number source ``rng``); diffusers' SDE scheduler gets a Brownian tree seeded with the first seed.
    """
    scheduler = sampler.build(model.scheduler_config, model.prediction_type, seeds=list(seeds),
                              sdxl=model.family.id.startswith("sdxl"), rng=rng)
    if "noise_sampler_seed" in scheduler.config:
        scheduler = type(scheduler).from_config(scheduler.config, noise_sampler_seed=seeds[0])
    pipe.scheduler = scheduler


def _hand_over_uncond(pipe: Any, stack: contextlib.ExitStack) -> None:
    """DDIM CFG++ needs the unconditional prediction that the pipeline's CFG combines away: a UNet
    forward hook (removed with the pass) hands each raw output batch to the scheduler."""
    scheduler = pipe.scheduler
    if not getattr(scheduler, "wants_uncond", False):
        return

    def keep(module: Any, args: Any, output: Any) -> None:
        scheduler.receive_model_output(output[0] if isinstance(output, tuple) else output.sample)

    stack.callback(pipe.unet.register_forward_hook(keep).remove)


def run_pass(spec: Pass, req: "GenerationRequest", *, hooks: Sequence[SamplingHook], progress: BatchProgress,
             infotext: dict[str, Any]) -> Any:
    """Run one pipeline call; returns the pipeline output's ``images`` (PIL list or latents).

    Hook infotext entries are merged into ``infotext``. Honours interrupt/skip between steps.
    """
    set_scheduler(spec.pipe, spec.model, spec.sampler, spec.seeds, rng=getattr(req, "randn_source", None) or "CPU")
    if "denoising_start" in spec.kwargs and hasattr(spec.pipe.scheduler, "begin_counts_calls"):
        spec.pipe.scheduler.begin_counts_calls = True  # SDXL's refiner start is a model-call index
    call = ARCHITECTURE_CALLS[spec.model.family.architecture]
    kwargs = dict(spec.kwargs)
    if "strength" in kwargs and kwargs.get("denoising_start") is None:
        kwargs["strength"] = pipeline_strength(spec.model, spec.steps, float(kwargs["strength"]))
    ctx = SamplingContext(pipe=spec.pipe, model=spec.model, req=req, task=spec.task, prompts=list(spec.prompts),
                          negatives=list(spec.negatives), seeds=list(spec.seeds), batch_index=spec.batch_index,
                          call_kwargs={"num_inference_steps": spec.steps, **call.guidance_kwargs(spec.model, req),
                                       **kwargs},
                          extra_networks=list(spec.extra_networks))
    counted = 0
    with contextlib.ExitStack() as stack:
        for hook in hooks:
            stack.enter_context(hook(ctx))
        _hand_over_uncond(ctx.pipe, stack)
        cond = call.conditioning(spec.model, ctx.pipe, req, ctx.prompts, ctx.negatives, max(spec.expected_steps, 1))

        preview_size = (spec.kwargs["width"], spec.kwargs["height"]) \
            if {"width", "height"} <= spec.kwargs.keys() else None

        def on_step_end(pipeline: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            nonlocal counted
            if cond.callback is not None:
                kwargs = cond.callback(pipeline, step, timestep, kwargs)
            counted = step + 1
            latents = kwargs.get("latents")
            for step_callback in ctx.step_callbacks:
                step_callback(counted, spec.expected_steps, timestep, latents)
            progress.report(counted, None if latents is None else
                            lambda: latents_to_preview(latents, spec.model.family, preview_size))
            # diffusers' documented way to stop the denoising loop; an A1111 sampler that has returned
            # its result (its remaining timesteps are padding) stops it the same way
            if progress.stopped or getattr(pipeline.scheduler, "finished", False):
                pipeline._interrupt = True
            return kwargs

        with torch.no_grad():
            out = ctx.pipe(callback_on_step_end=on_step_end, callback_on_step_end_tensor_inputs=cond.tensor_inputs,
                           **{**cond.kwargs, **ctx.call_kwargs})
    progress.finish_pass(counted or (0 if progress.stopped else spec.expected_steps))
    infotext.update(ctx.infotext_params)
    return out.images
