"""Run a :class:`Txt2ImgRequest` on the loaded model: seeds, sampler, sampling, hires fix, refiner, infotext, saving.

Determinism: the initial noise comes from A1111 seed semantics on a CPU generator and every
stochastic sampler gets its own per-image CPU generator, so the same request and seed give
the same image, bit for bit, on CPU.

Per batch: the first pass (:mod:`modules.generation.sampling.passes`), then optionally the hires second pass
(:mod:`modules.generation.runners.hires`) and the SDXL refiner (:mod:`modules.generation.runners.refiner`; in the hires
pass when hires fix is on, as A1111's default). Extension hooks
(:mod:`modules.generation.addons.hooks`) are entered around every pass.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import torch
from PIL import Image

from modules.generation.addons.hooks import SamplingHook, handled_network_kinds
from modules.generation.fitting import fit_to_model
from modules.generation.runners.hires import HiresPlan, hires_pass, plan_hires, upscale_first_pass
from modules.generation.sampling.latent_codec import (blank_inpaint_conditioning, decode_latents, derived_pipeline,
                                             unpack_output_latents)
from modules.generation.sampling.pipeline_call import ARCHITECTURE_CALLS
from modules.generation.prompts.prepared import prepare_prompt_pair
from modules.generation.runners.refiner import RefinerSource, load_refiner, refiner_infotext, refiner_pass, schedule_boundary
from modules.generation.results import GenerationResult, OutputOptions, generation_params, record_image
from modules.generation.sampling.samplers import resolve_sampler
from modules.generation.sampling.passes import BatchProgress, Pass, run_pass, switch_steps
from modules.generation.sampling.seeds import SeedPlan, make_initial_noise, plan_seeds
from modules.generation.validation import check_sampler_for_model, check_task, resolve_size
from modules.images.upscalers import UpscalerSet
from modules.jobs.progress import JobControl

if TYPE_CHECKING:
    from modules.generation.prompts.prepared import PreparedPrompts
    from modules.generation.sampling.samplers import ResolvedSampler
    from modules.generation.requests import Txt2ImgRequest
    from modules.generation.prompts.styles import StyleStore
    from modules.models.loader import LoadedModel
    from modules.models.manager import ActiveModel

__all__ = ["GenerationResult", "OutputOptions", "Txt2ImgPlan", "generation_params", "new_result", "plan_txt2img",
           "run_txt2img", "run_txt2img_batch"]


@dataclass
class Txt2ImgPlan:
    """Everything a txt2img job decides once (validated against the model; the refiner loaded): what each
    batch needs, so a caller (the job's runner, an X/Y/Z grid) can run one batch at a time."""

    req: "Txt2ImgRequest"
    active: "ActiveModel"
    texts: "PreparedPrompts"
    hr_texts: "PreparedPrompts"
    width: int
    height: int
    sampler: "ResolvedSampler"
    schedule_label: str
    hires: HiresPlan | None
    refiner: "ActiveModel | None"
    extra: dict[str, Any]
    seed_plan: SeedPlan
    resize_from: tuple[int, int] | None
    total_steps: int
    notes: list[str] = field(default_factory=list)

    @property
    def size_text(self) -> str:
        return f"{self.width}x{self.height}" + (f" -> {self.hires.width}x{self.hires.height}" if self.hires else "")


def plan_txt2img(req: "Txt2ImgRequest", active: "ActiveModel", styles: "StyleStore | None" = None, *,
                 hooks: Sequence[SamplingHook] = (), refiners: RefinerSource | None = None,
                 upscalers: UpscalerSet | None = None) -> Txt2ImgPlan:
    """Validate ``req`` against the loaded model and decide sizes, sampler, hires plan, refiner and seeds."""
    kinds = handled_network_kinds(hooks)
    texts = prepare_prompt_pair(req.prompt, req.negative_prompt, req.styles, styles, req.steps, kinds)
    model = active.model
    check_task(model, "txt2img")
    req, notes = fit_to_model(req, model)
    width, height = resolve_size(req.width, req.height, model)
    sampler = resolve_sampler(req.sampler_name, req.scheduler)
    check_sampler_for_model(sampler, model)
    hires: HiresPlan | None = None
    hr_texts = texts
    if req.enable_hr:
        hr_texts = prepare_prompt_pair(req.hr_prompt or req.prompt, req.hr_negative_prompt or req.negative_prompt,
                                       req.styles, styles, req.hr_second_pass_steps or req.steps, kinds)
        hires = plan_hires(req, model, width, height, sampler, upscalers or UpscalerSet(), prompt=texts.prompt,
                           negative=texts.negative, hr_prompt=hr_texts.prompt, hr_negative=hr_texts.negative)
    refiner = load_refiner(req, model, refiners)
    extra: dict[str, Any] = dict(hires.params) if hires else {}
    if refiner is not None:
        extra.update(refiner_infotext(refiner, req.refiner_switch_at))
    resize_from = ((req.seed_resize_from_w, req.seed_resize_from_h)
                   if req.seed_resize_from_w > 0 and req.seed_resize_from_h > 0 else None)
    return Txt2ImgPlan(req=req, active=active, texts=texts, hr_texts=hr_texts, width=width, height=height,
                       sampler=sampler, schedule_label=sampler.schedule_label_for(model.prediction_type),
                       hires=hires, refiner=refiner, extra=extra,
                       seed_plan=plan_seeds(req.seed, req.subseed, req.subseed_strength, req.batch_size, req.n_iter),
                       resize_from=resize_from, total_steps=req.steps + (hires.executed_steps if hires else 0),
                       notes=list(notes))


def new_result(plan: Txt2ImgPlan) -> GenerationResult:
    """An empty result for ``plan``'s images (batches append to it)."""
    req, active = plan.req, plan.active
    return GenerationResult(seed_plan=plan.seed_plan, width=plan.width, height=plan.height,
                            sampler_name=plan.sampler.sampler_name, schedule_label=plan.schedule_label,
                            model_name=active.info.name_for_extra, model_hash=active.shorthash,
                            job_timestamp=time.strftime("%Y%m%d%H%M%S"),
                            denoising_strength=req.denoising_strength if plan.hires else None,
                            clip_skip=req.clip_skip, warnings=list(plan.notes))


def run_txt2img(req: "Txt2ImgRequest", active: "ActiveModel", control: JobControl, output: OutputOptions,
                styles: "StyleStore | None" = None, *, hooks: Sequence[SamplingHook] = (),
                refiners: RefinerSource | None = None, upscalers: UpscalerSet | None = None) -> GenerationResult:
    """Generate ``req.n_iter`` batches of ``req.batch_size`` images on ``active``: the job's runner, which owns
    its progress (``control.begin``) and runs :func:`run_txt2img_batch` for each batch.

    ``hooks`` join every pipeline call; ``refiners`` loads ``req.refiner_checkpoint`` (the ModelManager);
    ``upscalers`` offers the hires upscalers (default: latent modes, Lanczos, Nearest).
    """
    started = time.perf_counter()
    upscalers = upscalers or UpscalerSet()
    plan = plan_txt2img(req, active, styles, hooks=hooks, refiners=refiners, upscalers=upscalers)
    result = new_result(plan)
    control.begin(plan.req.n_iter, plan.total_steps, text=f"txt2img {plan.size_text}")
    for batch_no in range(plan.req.n_iter):
        if not run_txt2img_batch(plan, batch_no, control, result, output, hooks=hooks, upscalers=upscalers):
            break
    control.step(plan.total_steps)
    result.seconds = time.perf_counter() - started
    return result


def run_txt2img_batch(plan: Txt2ImgPlan, batch_no: int, control: JobControl, result: GenerationResult,
                      output: OutputOptions, *, hooks: Sequence[SamplingHook] = (),
                      upscalers: UpscalerSet | None = None, job_no: int | None = None) -> bool:
    """Run batch ``batch_no`` of ``plan`` and record its images in ``result``; False when the job was stopped
    (``result.interrupted`` is set). The caller owns the job's progress: it has called ``control.begin`` with
    room for this batch, whose steps are reported as batch ``job_no`` (default ``batch_no``)."""
    req = plan.req
    if control.should_stop:
        result.interrupted = True
        return False
    control.begin_batch(batch_no if job_no is None else job_no)
    seeds, subseeds = plan.seed_plan.batch(batch_no, req.batch_size)
    images, infotext = _sample_batch(plan, batch_no, seeds, control, hooks, upscalers or UpscalerSet())
    if control.should_stop:
        result.interrupted = True
    for index, image in enumerate(images):
        params = generation_params(req, seed=seeds[index], subseed=subseeds[index], width=plan.width,
                                   height=plan.height, sampler_name=plan.sampler.sampler_name,
                                   schedule_label=plan.schedule_label, active=plan.active, output=output,
                                   extra=infotext)
        record_image(result, image, seed=seeds[index], subseed=subseeds[index], prompt=plan.texts.prompt,
                     negative=plan.texts.negative, params=params, output=output)
    return not result.interrupted


def _sample_batch(plan: Txt2ImgPlan, batch_no: int, seeds: list[int], control: JobControl,
                  hooks: Sequence[SamplingHook], upscalers: UpscalerSet) -> tuple[list["Image.Image"], dict[str, Any]]:
    """The passes of one batch: first pass, then hires fix and/or the refiner; (images, infotext params)."""
    req, model = plan.req, plan.active.model
    width, height, sampler, refiner = plan.width, plan.height, plan.sampler, plan.refiner
    call = ARCHITECTURE_CALLS[model.family.architecture]
    pipe = model.pipeline
    device = getattr(pipe, "device", torch.device("cpu"))
    latent_shape = (model.latent_channels, height // model.vae_scale_factor, width // model.vae_scale_factor)
    subseeds = plan.seed_plan.batch(batch_no, req.batch_size)[1]
    noise = make_initial_noise(latent_shape, seeds, subseeds, req.subseed_strength, plan.resize_from,
                               latent_factor=model.vae_scale_factor, source=req.randn_source or "CPU")
    latents = call.prepare_latents(model, noise).to(device=device, dtype=getattr(pipe, "dtype", torch.float32))
    generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
    progress = BatchProgress(control, plan.total_steps)
    infotext: dict[str, Any] = dict(plan.extra)
    prompts = [plan.texts.encode_prompt] * req.batch_size
    negatives = [plan.texts.encode_negative] * req.batch_size

    switch_now = refiner is not None and plan.hires is None
    kwargs: dict[str, Any] = {"height": height, "width": width, "latents": latents, "generator": generators,
                              "output_type": "latent" if (plan.hires and plan.hires.is_latent) or switch_now
                              else "pil"}
    if model.task == "inpaint":  # an inpainting checkpoint: all masked, grey conditioning, pure noise start
        kwargs.update(blank_inpaint_conditioning(pipe, width, height, req.batch_size), strength=1.0,
                      image=Image.new("RGB", (width, height), (127, 127, 127)))
    if switch_now:
        kwargs["denoising_end"] = req.refiner_switch_at
    first = run_pass(Pass(task="txt2img", model=model, pipe=pipe, sampler=sampler, prompts=prompts,
                          negatives=negatives, seeds=seeds, batch_index=batch_no, steps=req.steps,
                          expected_steps=switch_steps(req.steps, 0.0, req.refiner_switch_at) if switch_now
                          else req.steps, kwargs=kwargs, extra_networks=plan.texts.networks),
                     req, hooks=hooks, progress=progress, infotext=infotext)
    if kwargs["output_type"] == "latent":
        first = unpack_output_latents(model, first, width, height)
    if progress.stopped:
        images = decode_latents(derived_pipeline(model, "img2img"), first) if torch.is_tensor(first) else first
    elif plan.hires is not None:
        images = _second_pass(req, plan.hires, model, first, upscalers, refiner, plan.hr_texts, seeds, batch_no,
                              generators, hooks, progress, infotext)
    elif refiner is not None:
        spec = refiner_pass(refiner, sampler, first, steps=req.steps, boundary=req.refiner_switch_at,
                            prompts=prompts, negatives=negatives, seeds=seeds, batch_index=batch_no,
                            generators=generators)
        images = run_pass(spec, req, hooks=hooks, progress=progress, infotext=infotext)
    else:
        images = first
    return images, infotext


def _second_pass(req: "Txt2ImgRequest", plan: HiresPlan, model: "LoadedModel", first: Any,
                 upscalers: UpscalerSet, refiner: "ActiveModel | None", hr_texts: "PreparedPrompts",
                 seeds: list[int], batch_no: int, generators: list[Any], hooks: Sequence[SamplingHook],
                 progress: BatchProgress, infotext: dict[str, Any]) -> list["Image.Image"]:
    """Hires fix for one batch: upscale, then img2img (handing over to the refiner when there is one)."""
    latents = upscale_first_pass(plan, model, first, upscalers)
    if plan.executed_steps < 1:  # strength too low for a single step: the upscaled image as it is
        return decode_latents(derived_pipeline(model, "img2img"), latents)
    prompts = [hr_texts.encode_prompt] * len(seeds)
    negatives = [hr_texts.encode_negative] * len(seeds)
    boundary = schedule_boundary(req.refiner_switch_at, req.denoising_strength) if refiner else None
    spec = hires_pass(plan, model, latents, strength=req.denoising_strength, prompts=prompts, negatives=negatives,
                      seeds=seeds, batch_index=batch_no, generators=generators,
                      output_type="latent" if refiner else "pil", denoising_end=boundary)
    spec.extra_networks = hr_texts.networks
    out = run_pass(spec, req, hooks=hooks, progress=progress, infotext=infotext)
    if refiner is None or boundary is None:
        return out
    if progress.stopped:
        return decode_latents(derived_pipeline(model, "img2img"), out)
    refine = refiner_pass(refiner, plan.sampler, out, steps=plan.steps, boundary=boundary, prompts=prompts,
                          negatives=negatives, seeds=seeds, batch_index=batch_no, generators=generators)
    return run_pass(refine, req, hooks=hooks, progress=progress, infotext=infotext)
