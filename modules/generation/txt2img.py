"""Run a :class:`Txt2ImgRequest` on the loaded model: seeds, sampler, sampling, infotext, saving.

Determinism: the initial noise comes from A1111 seed semantics on a CPU generator and every
stochastic sampler gets its own per-image CPU generator, so the same request and seed give
the same image, bit for bit, on CPU.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from modules.generation.pipeline_call import ARCHITECTURE_CALLS
from modules.generation.samplers import resolve_sampler
from modules.generation.seeds import SeedPlan, make_initial_noise, plan_seeds
from modules.generation.validation import check_sampler_for_model, check_task, resolve_size
from modules.images.infotext import build_infotext
from modules.images.saving import save_generated_image
from modules.jobs.progress import JobControl
from modules.version import VERSION

if TYPE_CHECKING:
    from PIL import Image

    from modules.generation.requests import Txt2ImgRequest
    from modules.generation.styles import StyleStore
    from modules.models.manager import ActiveModel

log = logging.getLogger(__name__)


@dataclass
class GenerationResult:
    """What a generation job produced (images stay in memory; paths when saved)."""

    images: list["Image.Image"] = field(default_factory=list)
    infotexts: list[str] = field(default_factory=list)
    paths: list[Path | None] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    subseeds: list[int] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)
    negative_prompts: list[str] = field(default_factory=list)
    seed_plan: SeedPlan | None = None
    width: int = 0
    height: int = 0
    sampler_name: str = ""
    schedule_label: str = ""
    model_name: str = ""
    model_hash: str | None = None
    interrupted: bool = False
    job_timestamp: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class OutputOptions:
    save: bool
    outdir: Path
    write_infotext: bool = True
    add_model_hash: bool = True
    add_model_name: bool = True
    add_version: bool = True


def generation_params(req: "Txt2ImgRequest", *, seed: int, subseed: int, width: int, height: int,
                      sampler_name: str, schedule_label: str, active: "ActiveModel",
                      output: OutputOptions) -> dict[str, Any]:
    """The infotext parameters of one image, in A1111 key names."""
    params: dict[str, Any] = {
        "Steps": req.steps,
        "Sampler": sampler_name,
        "Schedule type": schedule_label,
        "CFG scale": req.cfg_scale,
        "Seed": seed,
        "Size": f"{width}x{height}",
        "Model hash": active.shorthash if output.add_model_hash else None,
        "Model": active.info.name_for_extra if output.add_model_name else None,
    }
    if req.subseed_strength > 0:
        params["Variation seed"] = subseed
        params["Variation seed strength"] = req.subseed_strength
    if req.seed_resize_from_w > 0 and req.seed_resize_from_h > 0:
        params["Seed resize from"] = f"{req.seed_resize_from_w}x{req.seed_resize_from_h}"
    if req.clip_skip > 1:
        params["Clip skip"] = req.clip_skip
    params["RNG"] = "CPU"  # initial noise always comes from a CPU generator
    if active.model.family.architecture == "flux" and active.model.family.id == "flux-dev":
        params["Distilled CFG Scale"] = getattr(req, "distilled_cfg_scale", 3.5)
    if output.add_version:
        params["Version"] = VERSION
    return params


def prepare_prompts(req: "Txt2ImgRequest", styles: "StyleStore | None") -> tuple[str, str, str, str]:
    """(infotext prompt, infotext negative, prompt to encode, negative to encode).

    Styles are baked into the prompt (and so into the infotext), as A1111 does; extra-network
    tags such as ``<lora:name:1>`` stay in the infotext but are removed before encoding;
    composable ``AND`` keeps its first sub-prompt.
    """
    from modules.generation.prompt_parser import extract_extra_networks, split_and
    from modules.generation.validation import InvalidRequestError

    from modules.generation.prompt_parser import PromptSyntaxError, get_learned_conditioning_prompt_schedules
    from modules.generation.styles import StyleError

    prompt, negative = req.prompt, req.negative_prompt
    try:
        if req.styles:
            if styles is None:
                raise InvalidRequestError("styles were requested but no styles.csv is configured")
            prompt, negative = styles.apply_styles(prompt, negative, req.styles)
        encode_prompt, networks = extract_extra_networks(prompt)
        encode_negative, _ = extract_extra_networks(negative)
        get_learned_conditioning_prompt_schedules([encode_prompt, encode_negative], req.steps)
    except (PromptSyntaxError, StyleError) as exc:
        raise InvalidRequestError(str(exc)) from None
    if networks:
        names = ", ".join(f"<{c.kind}:{c.items[0] if c.items else ''}>" for c in networks)
        raise InvalidRequestError(f"extra networks are not available yet: remove {names} from the prompt")
    encode_prompt = split_and(encode_prompt)[0][0] if encode_prompt.strip() else encode_prompt
    return prompt, negative, encode_prompt, encode_negative


def run_txt2img(req: "Txt2ImgRequest", active: "ActiveModel", control: JobControl,
                output: OutputOptions, styles: "StyleStore | None" = None) -> GenerationResult:
    """Generate ``req.n_iter`` batches of ``req.batch_size`` images on ``active``."""
    started = time.perf_counter()
    prompt, negative, encode_prompt, encode_negative = prepare_prompts(req, styles)
    model = active.model
    check_task(model, "txt2img")
    width, height = resolve_size(req.width, req.height, model)
    sampler = resolve_sampler(req.sampler_name, req.scheduler)
    check_sampler_for_model(sampler, model)
    schedule_label = sampler.schedule_label_for(model.prediction_type)
    pipe = model.pipeline
    pipe.scheduler = sampler.build(model.scheduler_config, model.prediction_type)
    plan = plan_seeds(req.seed, req.subseed, req.subseed_strength, req.batch_size, req.n_iter)
    call = ARCHITECTURE_CALLS[model.family.architecture]
    resize_from = ((req.seed_resize_from_w, req.seed_resize_from_h)
                   if req.seed_resize_from_w > 0 and req.seed_resize_from_h > 0 else None)

    result = GenerationResult(seed_plan=plan, width=width, height=height, sampler_name=sampler.sampler_name,
                              schedule_label=schedule_label, model_name=active.info.name_for_extra,
                              model_hash=active.shorthash, job_timestamp=time.strftime("%Y%m%d%H%M%S"))
    control.begin(req.n_iter, req.steps, text=f"txt2img {width}x{height}")
    latent_shape = (model.latent_channels, height // model.vae_scale_factor, width // model.vae_scale_factor)
    device = getattr(pipe, "device", torch.device("cpu"))

    for batch_no in range(req.n_iter):
        if control.should_stop:
            result.interrupted = True
            break
        control.begin_batch(batch_no)
        lo, hi = batch_no * req.batch_size, (batch_no + 1) * req.batch_size
        seeds, subseeds = plan.all_seeds[lo:hi], plan.all_subseeds[lo:hi]
        noise = make_initial_noise(latent_shape, seeds, subseeds, req.subseed_strength, resize_from,
                                   latent_factor=model.vae_scale_factor)
        latents = call.prepare_latents(model, noise).to(device=device, dtype=pipe.dtype if hasattr(pipe, "dtype") else torch.float32)
        generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
        if "noise_sampler_seed" in pipe.scheduler.config:  # SDE samplers: seed the Brownian tree, not the global RNG
            pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, noise_sampler_seed=seeds[0])

        cond = call.conditioning(model, req, [encode_prompt] * req.batch_size,
                                 [encode_negative] * req.batch_size)

        def on_step_end(pipeline: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            if cond.callback is not None:
                kwargs = cond.callback(pipeline, step, timestep, kwargs)
            control.step(step + 1)
            if control.should_stop or control.should_skip_batch:
                pipeline._interrupt = True  # diffusers' documented way to stop the denoising loop
            return kwargs

        out = pipe(num_inference_steps=req.steps, height=height, width=width, latents=latents,
                   generator=generators, output_type="pil", callback_on_step_end=on_step_end,
                   callback_on_step_end_tensor_inputs=cond.tensor_inputs, **cond.kwargs,
                   **call.guidance_kwargs(model, req))
        if control.should_stop:
            result.interrupted = True
        for index, image in enumerate(out.images):
            seed, subseed = seeds[index], subseeds[index]
            params = generation_params(req, seed=seed, subseed=subseed, width=width, height=height,
                                       sampler_name=sampler.sampler_name, schedule_label=schedule_label,
                                       active=active, output=output)
            infotext = build_infotext(prompt, negative, params)
            if output.write_infotext:
                image.info["parameters"] = infotext
            path = (save_generated_image(image, outdir=output.outdir, seed=seed,
                                         infotext=infotext if output.write_infotext else "")
                    if output.save else None)
            result.images.append(image)
            result.infotexts.append(infotext)
            result.paths.append(path)
            result.seeds.append(seed)
            result.subseeds.append(subseed)
            result.prompts.append(prompt)
            result.negative_prompts.append(negative)
        if result.interrupted:
            break
    control.step(req.steps)
    result.seconds = time.perf_counter() - started
    return result
