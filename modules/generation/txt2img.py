"""Run a :class:`Txt2ImgRequest` on the loaded model: seeds, sampler, sampling, hires fix, refiner, infotext, saving.

Determinism: the initial noise comes from A1111 seed semantics on a CPU generator and every
stochastic sampler gets its own per-image CPU generator, so the same request and seed give
the same image, bit for bit, on CPU.

Per batch: the first pass (:mod:`modules.generation.sampling`), then optionally the hires second pass
(:mod:`modules.generation.hires`) and the SDXL refiner (:mod:`modules.generation.refiner`; in the hires
pass when hires fix is on, as A1111's default). Extension hooks
(:mod:`modules.generation.extensions_point`) are entered around every pass.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Sequence

import torch
from PIL import Image

from modules.generation.extensions_point import SamplingHook, handled_network_kinds
from modules.generation.fitting import fit_to_model
from modules.generation.hires import HiresPlan, hires_pass, plan_hires, upscale_first_pass
from modules.generation.latent_codec import (blank_inpaint_conditioning, decode_latents, derived_pipeline,
                                             unpack_output_latents)
from modules.generation.pipeline_call import ARCHITECTURE_CALLS
from modules.generation.prompts import prepare_prompt_pair
from modules.generation.refiner import RefinerSource, load_refiner, refiner_infotext, refiner_pass, schedule_boundary
from modules.generation.results import GenerationResult, OutputOptions, generation_params, record_image
from modules.generation.samplers import resolve_sampler
from modules.generation.sampling import BatchProgress, Pass, run_pass, switch_steps
from modules.generation.seeds import make_initial_noise, plan_seeds
from modules.generation.validation import check_sampler_for_model, check_task, resolve_size
from modules.images.upscalers import UpscalerSet
from modules.jobs.progress import JobControl

if TYPE_CHECKING:
    from modules.generation.prompts import PreparedPrompts
    from modules.generation.requests import GenerationRequest, Txt2ImgRequest
    from modules.generation.styles import StyleStore
    from modules.models.loader import LoadedModel
    from modules.models.manager import ActiveModel

__all__ = ["GenerationResult", "OutputOptions", "generation_params", "prepare_prompts", "run_txt2img"]


def prepare_prompts(req: "GenerationRequest", styles: "StyleStore | None",
                    handled_kinds: Sequence[str] = ()) -> tuple[str, str, str, str]:
    """(infotext prompt, infotext negative, prompt to encode, negative to encode); see :mod:`prompts`."""
    p = prepare_prompt_pair(req.prompt, req.negative_prompt, req.styles, styles, req.steps, handled_kinds)
    return p.prompt, p.negative, p.encode_prompt, p.encode_negative


def run_txt2img(req: "Txt2ImgRequest", active: "ActiveModel", control: JobControl, output: OutputOptions,
                styles: "StyleStore | None" = None, *, hooks: Sequence[SamplingHook] = (),
                refiners: RefinerSource | None = None, upscalers: UpscalerSet | None = None) -> GenerationResult:
    """Generate ``req.n_iter`` batches of ``req.batch_size`` images on ``active``.

    ``hooks`` join every pipeline call; ``refiners`` loads ``req.refiner_checkpoint`` (the ModelManager);
    ``upscalers`` offers the hires upscalers (default: latent modes, Lanczos, Nearest).
    """
    started = time.perf_counter()
    kinds = handled_network_kinds(hooks)
    texts = prepare_prompt_pair(req.prompt, req.negative_prompt, req.styles, styles, req.steps, kinds)
    model = active.model
    check_task(model, "txt2img")
    req, notes = fit_to_model(req, model)
    width, height = resolve_size(req.width, req.height, model)
    sampler = resolve_sampler(req.sampler_name, req.scheduler)
    check_sampler_for_model(sampler, model)
    schedule_label = sampler.schedule_label_for(model.prediction_type)
    upscalers = upscalers or UpscalerSet()
    plan: HiresPlan | None = None
    hr_texts = texts
    if req.enable_hr:
        hr_texts = prepare_prompt_pair(req.hr_prompt or req.prompt, req.hr_negative_prompt or req.negative_prompt,
                                       req.styles, styles, req.hr_second_pass_steps or req.steps, kinds)
        plan = plan_hires(req, model, width, height, sampler, upscalers, prompt=texts.prompt,
                          negative=texts.negative, hr_prompt=hr_texts.prompt, hr_negative=hr_texts.negative)
    refiner = load_refiner(req, model, refiners)
    extra: dict[str, Any] = dict(plan.params) if plan else {}
    if refiner is not None:
        extra.update(refiner_infotext(refiner, req.refiner_switch_at))

    seed_plan = plan_seeds(req.seed, req.subseed, req.subseed_strength, req.batch_size, req.n_iter)
    call = ARCHITECTURE_CALLS[model.family.architecture]
    resize_from = ((req.seed_resize_from_w, req.seed_resize_from_h)
                   if req.seed_resize_from_w > 0 and req.seed_resize_from_h > 0 else None)
    result = GenerationResult(seed_plan=seed_plan, width=width, height=height, sampler_name=sampler.sampler_name,
                              schedule_label=schedule_label, model_name=active.info.name_for_extra,
                              model_hash=active.shorthash, job_timestamp=time.strftime("%Y%m%d%H%M%S"),
                              denoising_strength=req.denoising_strength if plan else None,
                              clip_skip=req.clip_skip, warnings=notes)
    total_steps = req.steps + (plan.executed_steps if plan else 0)
    size_text = f"{width}x{height}" + (f" -> {plan.width}x{plan.height}" if plan else "")
    control.begin(req.n_iter, total_steps, text=f"txt2img {size_text}")
    latent_shape = (model.latent_channels, height // model.vae_scale_factor, width // model.vae_scale_factor)
    pipe = model.pipeline
    device = getattr(pipe, "device", torch.device("cpu"))

    for batch_no in range(req.n_iter):
        if control.should_stop:
            result.interrupted = True
            break
        control.begin_batch(batch_no)
        seeds, subseeds = seed_plan.batch(batch_no, req.batch_size)
        noise = make_initial_noise(latent_shape, seeds, subseeds, req.subseed_strength, resize_from,
                                   latent_factor=model.vae_scale_factor)
        latents = call.prepare_latents(model, noise).to(device=device, dtype=getattr(pipe, "dtype", torch.float32))
        generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
        progress = BatchProgress(control, total_steps)
        infotext: dict[str, Any] = dict(extra)
        prompts = [texts.encode_prompt] * req.batch_size
        negatives = [texts.encode_negative] * req.batch_size

        switch_now = refiner is not None and plan is None
        kwargs: dict[str, Any] = {"height": height, "width": width, "latents": latents, "generator": generators,
                                  "output_type": "latent" if (plan and plan.is_latent) or switch_now else "pil"}
        if model.task == "inpaint":  # an inpainting checkpoint: all masked, grey conditioning, pure noise start
            kwargs.update(blank_inpaint_conditioning(pipe, width, height, req.batch_size), strength=1.0,
                          image=Image.new("RGB", (width, height), (127, 127, 127)))
        if switch_now:
            kwargs["denoising_end"] = req.refiner_switch_at
        first = run_pass(Pass(task="txt2img", model=model, pipe=pipe, sampler=sampler, prompts=prompts,
                              negatives=negatives, seeds=seeds, batch_index=batch_no, steps=req.steps,
                              expected_steps=switch_steps(req.steps, 0.0, req.refiner_switch_at) if switch_now
                              else req.steps, kwargs=kwargs, extra_networks=texts.networks),
                         req, hooks=hooks, progress=progress, infotext=infotext)
        if kwargs["output_type"] == "latent":
            first = unpack_output_latents(model, first, width, height)

        images: list["Image.Image"]
        if progress.stopped:
            images = decode_latents(derived_pipeline(model, "img2img"), first) if torch.is_tensor(first) else first
        elif plan is not None:
            images = _second_pass(req, plan, model, first, upscalers, refiner, hr_texts, seeds, batch_no,
                                  generators, hooks, progress, infotext)
        elif refiner is not None:
            spec = refiner_pass(refiner, sampler, first, steps=req.steps, boundary=req.refiner_switch_at,
                                prompts=prompts, negatives=negatives, seeds=seeds, batch_index=batch_no,
                                generators=generators)
            images = run_pass(spec, req, hooks=hooks, progress=progress, infotext=infotext)
        else:
            images = first
        if control.should_stop:
            result.interrupted = True
        for index, image in enumerate(images):
            params = generation_params(req, seed=seeds[index], subseed=subseeds[index], width=width, height=height,
                                       sampler_name=sampler.sampler_name, schedule_label=schedule_label,
                                       active=active, output=output, extra=infotext)
            record_image(result, image, seed=seeds[index], subseed=subseeds[index], prompt=texts.prompt,
                         negative=texts.negative, params=params, output=output)
        if result.interrupted:
            break
    control.step(total_steps)
    result.seconds = time.perf_counter() - started
    return result


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
