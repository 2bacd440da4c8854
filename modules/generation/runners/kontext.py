"""FLUX.1 Kontext editing: the init image(s) as reference for an instruction ("make the circle blue").

diffusers' :class:`~diffusers.FluxKontextPipeline` shares every module of a loaded FLUX.1 model: the
reference image is encoded and its latent tokens join the sequence next to the noise tokens, so the
model edits rather than re-noises (there is no denoising strength). It is meant for a FLUX.1 Kontext
checkpoint (same architecture and keys as FLUX.1 dev, so it loads through the FLUX family); on a plain
dev/schnell file it runs but does not follow edit instructions well.

Several references: diffusers' FLUX.1 Kontext pipeline takes one reference image, so, as ComfyUI's
Kontext workflows do, several init images are stitched side by side (each scaled to the output height)
into one reference. The output starts from A1111 seed noise, like txt2img, so seeds reproduce.
Infotext adds ``Kontext references: N``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Sequence

import torch
from PIL import Image

from modules.generation.addons.hooks import SamplingHook, handled_network_kinds
from modules.generation.sampling.latent_codec import derived_pipeline
from modules.generation.sampling.pipeline_call import ARCHITECTURE_CALLS
from modules.generation.prompts.prepared import prepare_prompt_pair
from modules.generation.results import GenerationResult, OutputOptions, generation_params, record_image
from modules.generation.sampling.samplers import resolve_sampler
from modules.generation.sampling.passes import BatchProgress, Pass, run_pass
from modules.generation.sampling.seeds import make_initial_noise, plan_seeds
from modules.generation.validation import InvalidRequestError, check_sampler_for_model, size_for_image
from modules.jobs.progress import JobControl

if TYPE_CHECKING:
    from modules.generation.requests import Img2ImgRequest
    from modules.generation.prompts.styles import StyleStore
    from modules.models.loader import LoadedModel
    from modules.models.manager import ActiveModel

MAX_REFERENCE_WIDTH_FACTOR = 4  # a stitched reference at most 4x the output width (cost grows with tokens)


def check_kontext(req: "Img2ImgRequest", model: "LoadedModel | None") -> None:
    """Refuse what Kontext editing cannot do (InvalidRequestError with the reason)."""
    if model is not None and "kontext" not in model.family.pipelines:
        raise InvalidRequestError(f"Kontext editing needs a FLUX.1 model (ideally a FLUX.1 Kontext checkpoint); "
                                  f"the loaded model is {model.family.label}")
    if req.mask or req.outpaint is not None:
        raise InvalidRequestError("Kontext editing uses whole reference images: remove the mask / outpainting")
    if req.refiner_checkpoint:
        raise InvalidRequestError("Kontext editing has no refiner switch-over")
    if req.subseed_strength > 0:
        raise InvalidRequestError("variation seeds are not supported for Kontext editing; set subseed_strength to 0")


def stitched_reference(images: Sequence[Image.Image], height: int, multiple: int) -> Image.Image:
    """One reference image: each image scaled to ``height`` (aspect kept), side by side, width rounded."""
    scaled = [image.convert("RGB").resize((max(1, round(image.width * height / image.height)), height),
                                          Image.Resampling.LANCZOS) for image in images]
    width = sum(image.width for image in scaled)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    x = 0
    for image in scaled:
        canvas.paste(image, (x, 0))
        x += image.width
    rounded = max(multiple, width // multiple * multiple)
    return canvas if rounded == width else canvas.resize((rounded, height), Image.Resampling.LANCZOS)


def run_kontext(req: "Img2ImgRequest", active: "ActiveModel", images: list[Image.Image], control: JobControl,
                output: OutputOptions, styles: "StyleStore | None" = None, *,
                hooks: Sequence[SamplingHook] = ()) -> GenerationResult:
    """Edit ``images`` (decoded, flattened init images) following the prompt, ``req.n_iter`` batches."""
    started = time.perf_counter()
    model = active.model
    check_kontext(req, model)
    texts = prepare_prompt_pair(req.prompt, req.negative_prompt, req.styles, styles, req.steps,
                                handled_network_kinds(hooks))
    width, height = size_for_image(req.width, req.height, images[0].size, model)
    sampler = resolve_sampler(req.sampler_name, req.scheduler)
    check_sampler_for_model(sampler, model)
    multiple = model.family.size_multiple
    reference = stitched_reference(images, height, multiple)
    if reference.width > MAX_REFERENCE_WIDTH_FACTOR * width:
        raise InvalidRequestError(f"{len(images)} reference images stitched side by side are too wide "
                                  f"({reference.width} px for a {width} px output); send fewer")
    schedule_label = sampler.schedule_label_for(model.prediction_type)
    seed_plan = plan_seeds(req.seed, req.subseed, req.subseed_strength, req.batch_size, req.n_iter)
    result = GenerationResult(seed_plan=seed_plan, width=width, height=height, sampler_name=sampler.sampler_name,
                              schedule_label=schedule_label, model_name=active.info.name_for_extra,
                              model_hash=active.shorthash, job_timestamp=time.strftime("%Y%m%d%H%M%S"))
    pipe = derived_pipeline(model, "kontext")
    call = ARCHITECTURE_CALLS[model.family.architecture]
    latent_shape = (model.latent_channels, height // model.vae_scale_factor, width // model.vae_scale_factor)
    extra: dict[str, Any] = {"Kontext references": len(images)}
    control.begin(req.n_iter, req.steps, text=f"kontext {width}x{height}")
    for batch_no in range(req.n_iter):
        if control.should_stop:
            result.interrupted = True
            break
        control.begin_batch(batch_no)
        seeds, subseeds = seed_plan.batch(batch_no, req.batch_size)
        noise = make_initial_noise(latent_shape, seeds, subseeds, 0.0, None, latent_factor=model.vae_scale_factor)
        latents = call.prepare_latents(model, noise).to(device=pipe.device, dtype=pipe.dtype)
        kwargs: dict[str, Any] = {"height": height, "width": width, "latents": latents, "image": reference,
                                  "_auto_resize": False, "max_area": width * height, "output_type": "pil",
                                  "generator": [torch.Generator("cpu").manual_seed(s) for s in seeds]}
        infotext = dict(extra)
        spec = Pass(task="img2img", model=model, pipe=pipe, sampler=sampler,
                    prompts=[texts.encode_prompt] * len(seeds), negatives=[texts.encode_negative] * len(seeds),
                    seeds=seeds, batch_index=batch_no, steps=req.steps, expected_steps=req.steps, kwargs=kwargs,
                    extra_networks=texts.networks)
        outputs = run_pass(spec, req, hooks=hooks, progress=BatchProgress(control, req.steps), infotext=infotext)
        if control.should_stop:
            result.interrupted = True
        for index, image in enumerate(outputs):
            params = generation_params(req, seed=seeds[index], subseed=subseeds[index], width=width, height=height,
                                       sampler_name=sampler.sampler_name, schedule_label=schedule_label,
                                       active=active, output=output, extra=infotext)
            record_image(result, image, seed=seeds[index], subseed=subseeds[index], prompt=texts.prompt,
                         negative=texts.negative, params=params, output=output)
        if result.interrupted:
            break
    control.step(req.steps)
    result.seconds = time.perf_counter() - started
    return result
