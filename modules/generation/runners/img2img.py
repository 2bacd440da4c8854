"""Run an :class:`Img2ImgRequest` (img2img, inpainting, outpainting) or a folder batch, A1111 style.

Flow per job (A1111 ``StableDiffusionProcessingImg2Img``):

1. init images (base64, RGBA flattened on white) and the mask are decoded; outpainting first grows
   the canvas (:func:`modules.generation.runners.inpaint.outpaint_canvas`);
2. each init image is resized with ``resize_mode`` (or, with a mask, prepared by
   :func:`modules.generation.runners.inpaint.prepare_inpaint`: blur, invert, fill, only-masked crop);
3. the images are encoded to latents (mode 3 resizes the latents), "latent noise" / "latent nothing"
   replace the masked latents;
4. the family's img2img pipeline (no mask) or inpaint pipeline (mask, or an inpainting checkpoint) runs
   at ``denoising_strength``; it noises the init latents with its first draw from each per-image
   generator, i.e. A1111's seed noise for seeds ``seed + i``. Regular checkpoints inpaint by latent
   mask blending each step, 9-channel inpainting checkpoints get mask + masked-image conditioning;
5. with a mask the original is composited back outside the (blurred) mask (A1111 ``apply_overlay``):
   those pixels come back unchanged.

As A1111, ``int(strength * steps) + 1`` steps run (a strength of exactly 0 returns the encoded-decoded init image). Variation seeds and seed
resize are refused (the noise is drawn inside the pipeline). Infotext adds ``Denoising strength``,
``Mask blur``, ``Mask mode``, ``Masked content``, ``Inpaint area``, ``Masked area padding`` and, with a
refiner (plain img2img on SDXL), ``Refiner`` / ``Refiner switch at``.
"""

from __future__ import annotations

import base64
import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image

from modules.generation.addons.hooks import SamplingHook, handled_network_kinds
from modules.generation.runners.inpaint import MaskError, PreparedInit, apply_overlay, outpaint_canvas, prepare_inpaint
from modules.generation.sampling.latent_codec import (accepts, decode_latents, derived_pipeline, encode_images,
                                             encode_pixels, to_tensor, unpack_output_latents)
from modules.generation.prompts.prepared import PreparedPrompts, prepare_prompt_pair
from modules.generation.runners.refiner import RefinerSource, load_refiner, refiner_infotext, refiner_pass, schedule_boundary
from modules.generation.results import GenerationResult, OutputOptions, generation_params, record_image
from modules.generation.sampling.samplers import resolve_sampler
from modules.generation.sampling.passes import BatchProgress, Pass, run_pass, strength_steps
from modules.generation.sampling.seeds import SeedPlan, plan_seeds, randn
from modules.generation.fitting import fit_to_model
from modules.generation.validation import InvalidRequestError, check_sampler_for_model, size_for_image
from modules.jobs.progress import JobControl

if TYPE_CHECKING:
    from modules.generation.requests import Img2ImgRequest
    from modules.generation.sampling.samplers import ResolvedSampler
    from modules.generation.prompts.styles import StyleStore
    from modules.images.upscalers import UpscalerSet
    from modules.models.loader import LoadedModel
    from modules.models.manager import ActiveModel

MAX_IMAGE_BYTES = 64 * 1024 * 1024
MAX_IMAGE_PIXELS = 8192 * 8192


# --------------------------------------------------------------------------- images in requests


def decode_request_image(data: str, what: str = "init image") -> Image.Image:
    """A base64 (or data-URI) image of a request; InvalidRequestError naming ``what`` if unusable."""
    from modules.images.codec import ImageDecodeError, decode_image_base64

    try:
        return decode_image_base64(data, max_bytes=MAX_IMAGE_BYTES, max_pixels=MAX_IMAGE_PIXELS)
    except ImageDecodeError as exc:
        raise InvalidRequestError(f"{what}: {exc}") from None


def encode_request_image(image: Image.Image) -> str:
    """A PIL image as the base64 PNG string a request carries."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def flatten(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """A1111 ``images.flatten``: transparency composited on the background colour, RGB out."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    return image.convert("RGB")


# --------------------------------------------------------------------------- job set-up


@dataclass
class Img2ImgPlan:
    """What an img2img job decides once (validated against the model; the refiner loaded), so a caller can
    run its batches (:func:`run_batches`) while owning the job's progress itself."""

    req: "Img2ImgRequest"
    active: "ActiveModel"
    texts: PreparedPrompts
    sampler: "ResolvedSampler"
    schedule_label: str
    width: int
    height: int
    inpaint: bool
    executed: int
    refiner: "ActiveModel | None"
    seed_plan: SeedPlan
    output: OutputOptions
    hooks: Sequence[SamplingHook]
    total_steps: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def _check_seeds(req: "Img2ImgRequest") -> None:
    if req.subseed_strength > 0 or (req.seed_resize_from_w > 0 and req.seed_resize_from_h > 0):
        raise InvalidRequestError("variation seeds and seed resize are not supported for img2img; "
                                  "set subseed_strength to 0")
    if req.outpaint is not None and req.inpainting_mask_invert:
        raise InvalidRequestError("outpainting paints the new area; inpainting_mask_invert cannot be used with it")


def precheck_img2img(req: "Img2ImgRequest", model: "LoadedModel | None", styles: "StyleStore | None" = None,
                     handled_kinds: Sequence[str] = ()) -> None:
    """Refuse before queueing what cannot run: no/undecodable images, variation seeds, prompt syntax,
    sampler, size (against ``model`` when one is loaded). Raises InvalidRequestError / SamplerError."""
    _check_seeds(req)
    if req.kind == "img2img" and not req.init_images:
        raise InvalidRequestError("img2img needs an init image: upload one first (Init image not found: init_images is empty)")
    images = [decode_request_image(data, f"init image {i + 1}") for i, data in enumerate(req.init_images)]
    if req.mask:
        decode_request_image(req.mask, "mask")
    if len(images) > 1 and len(images) > req.batch_size:
        raise InvalidRequestError(f"too many init images: {len(images)}; batch_size {req.batch_size} or less")
    prepare_prompt_pair(req.prompt, req.negative_prompt, req.styles, styles, req.steps, handled_kinds)
    sampler = resolve_sampler(req.sampler_name, req.scheduler)
    if req.flux_kontext:
        from modules.generation.runners.kontext import check_kontext

        check_kontext(req, model)
    if model is not None:
        check_sampler_for_model(sampler, model)
        fitted, _ = fit_to_model(req, model)
        if images and req.outpaint is None:
            size_for_image(fitted.width, fitted.height, images[0].size, model)


def plan_img2img(req: "Img2ImgRequest", active: "ActiveModel", styles: "StyleStore | None",
              hooks: Sequence[SamplingHook], refiners: RefinerSource | None, output: OutputOptions,
              size_source: tuple[int, int], has_mask: bool) -> Img2ImgPlan:
    """Everything decided once per job (validated against the model; loads the refiner if asked)."""
    model = active.model
    _check_seeds(req)
    texts = prepare_prompt_pair(req.prompt, req.negative_prompt, req.styles, styles, req.steps,
                                handled_network_kinds(hooks))
    if req.outpaint is not None:
        width, height = size_for_image(None, None, size_source, model)
    else:
        width, height = size_for_image(req.width, req.height, size_source, model)
    sampler = resolve_sampler(req.sampler_name, req.scheduler)
    check_sampler_for_model(sampler, model)
    inpaint = has_mask or model.task == "inpaint"
    refiner = load_refiner(req, model, refiners)
    if refiner is not None and inpaint:
        raise InvalidRequestError("the refiner switch-over is available for txt2img and plain img2img, "
                                  "not for inpainting")
    executed = strength_steps(model, req.steps, req.denoising_strength)
    extra: dict[str, Any] = {"Denoising strength": req.denoising_strength}
    if refiner is not None:
        extra.update(refiner_infotext(refiner, req.refiner_switch_at))
    seed_plan = plan_seeds(req.seed, req.subseed, req.subseed_strength, req.batch_size, req.n_iter)
    return Img2ImgPlan(req=req, active=active, texts=texts, sampler=sampler,
                      schedule_label=sampler.schedule_label_for(model.prediction_type), width=width, height=height,
                      inpaint=inpaint, executed=executed, refiner=refiner, seed_plan=seed_plan, output=output,
                      hooks=hooks, total_steps=max(executed, 1), extra=extra)


def load_inputs(req: "Img2ImgRequest", images: list[Image.Image], mask: Image.Image | None,
                multiple: int) -> tuple[list[Image.Image], Image.Image | None, Image.Image | None]:
    """Flattened init images, the mask and the outpaint protect mask (None when not outpainting)."""
    images = [flatten(image) for image in images]
    if req.outpaint is None:
        return images, mask, None
    grown = [outpaint_canvas(image, mask, req.outpaint, multiple) for image in images]
    if len({canvas.size for canvas, _, _ in grown}) > 1:
        raise InvalidRequestError("outpainting several init images needs them all the same size")
    return [c for c, _, _ in grown], grown[0][1], grown[0][2]


# --------------------------------------------------------------------------- latents


def _latent_mask(mask: Image.Image, shape: tuple[int, int], round_mask: bool) -> torch.Tensor:
    """A1111's ``latmask``: the processing mask at latent size, 0..1 (rounded)."""
    small = np.asarray(mask.convert("L").resize((shape[1], shape[0]), resample=Image.Resampling.BICUBIC),
                       dtype=np.float32) / 255.0
    if round_mask:
        small = np.around(small)
    return torch.from_numpy(small)[None, None]


def _init_latents(job: Img2ImgPlan, prepared: list[PreparedInit], pipe: Any) -> torch.Tensor:
    """Normalised latents of each prepared init image at the processing size."""
    factor = job.active.model.vae_scale_factor
    size = (job.height // factor, job.width // factor)
    if all(p.encode_source is None for p in prepared):
        return encode_images(pipe, [p.init for p in prepared])
    latents = []
    for p in prepared:  # resize mode 3: encode at the image's own size, resize the latents
        source = encode_images(pipe, [p.encode_source if p.encode_source is not None else p.init])
        latents.append(torch.nn.functional.interpolate(source, size=size, mode="bilinear"))
    return torch.cat(latents)


def _masked_content(job: Img2ImgPlan, latents: torch.Tensor, prepared: list[PreparedInit],
                    seeds: list[int]) -> torch.Tensor:
    """"latent noise" / "latent nothing": replace the masked latents (A1111, with the seeds' noise)."""
    fill = job.req.inpainting_fill
    if fill not in (2, 3) or not any(p.latent_mask is not None for p in prepared):
        return latents
    out = latents.clone()
    for i, p in enumerate(prepared):
        if p.latent_mask is None:
            continue
        m = _latent_mask(p.latent_mask, tuple(latents.shape[2:]), job.req.mask_round)[0]
        noise = randn(seeds[i], tuple(latents.shape[1:])) if fill == 2 else torch.zeros_like(latents[i])
        out[i] = latents[i] * (1 - m) + noise * m
    return out


def _inpaint_kwargs(job: Img2ImgPlan, pipe: Any, prepared: list[PreparedInit], latents: torch.Tensor) -> dict[str, Any]:
    """mask_image and masked_image_latents for the inpaint pipeline (9-channel: the masked init image)."""
    masks = [p.latent_mask if p.latent_mask is not None else Image.new("L", (job.width, job.height), 255)
             for p in prepared]
    unet = getattr(pipe, "unet", None)
    if unet is not None and unet.config.in_channels == 9:
        pixels = to_tensor([p.init for p in prepared])
        keep = torch.from_numpy(np.stack([np.asarray(m, dtype=np.float32) / 255.0 < 0.5 for m in masks]))[:, None]
        conditioning = encode_pixels(pipe, pixels * keep)
    else:
        conditioning = latents  # required by the pipeline's shapes, unused by 4-channel models
    return {"mask_image": masks, "masked_image_latents": conditioning.to(device=pipe.device, dtype=pipe.dtype),
            "height": job.height, "width": job.width}


# --------------------------------------------------------------------------- running


SavePath = Callable[[int], "Path | None"]


def run_batches(job: Img2ImgPlan, images: list[Image.Image], mask: Image.Image | None, protect: Image.Image | None,
                control: JobControl, result: GenerationResult, *, job_offset: int = 0,
                save_path: SavePath | None = None) -> None:
    """All ``n_iter`` batches of one set of init images; appends to ``result``."""
    req, model = job.req, job.active.model
    if len(images) > req.batch_size and len(images) > 1:
        raise InvalidRequestError(f"too many init images: {len(images)}; batch_size {req.batch_size} or less")
    batch_size = len(images) if len(images) > 1 else req.batch_size
    params_base: dict[str, Any] = dict(job.extra)
    try:
        prepared_once = [prepare_inpaint(image, mask, req, job.width, job.height, params_base, protect)
                         for image in images]
    except MaskError as exc:
        raise InvalidRequestError(str(exc)) from None
    prepared = prepared_once * batch_size if len(prepared_once) == 1 else prepared_once
    pipe = derived_pipeline(model, "inpaint" if job.inpaint else "img2img")
    base_latents = _init_latents(job, prepared_once, pipe)
    if len(prepared_once) == 1:
        base_latents = base_latents.repeat(batch_size, 1, 1, 1)
    texts = job.texts

    for batch_no in range(req.n_iter):
        if control.should_stop:
            result.interrupted = True
            break
        control.begin_batch(job_offset + batch_no)
        seeds, subseeds = job.seed_plan.batch(batch_no, batch_size)  # A1111 slices with the effective size
        latents = _masked_content(job, base_latents, prepared, seeds)
        progress = BatchProgress(control, job.total_steps)
        infotext = dict(params_base)
        if job.executed < 1:
            outputs = decode_latents(pipe, latents)
        else:
            outputs = _sample(job, pipe, prepared, latents, seeds, batch_no, progress, infotext)
        if control.should_stop:
            result.interrupted = True
        for index, image in enumerate(outputs):
            p = prepared[index]
            final = apply_overlay(image, p.paste_to, p.overlay) if p.overlay is not None else image
            params = generation_params(req, seed=seeds[index], subseed=subseeds[index], width=job.width,
                                       height=job.height, sampler_name=job.sampler.sampler_name,
                                       schedule_label=job.schedule_label, active=job.active, output=job.output,
                                       extra=infotext)
            target = save_path(len(result.images)) if save_path is not None else None
            record_image(result, final, seed=seeds[index], subseed=subseeds[index], prompt=texts.prompt,
                         negative=texts.negative, params=params, output=job.output, save_as=target)
        if result.interrupted:
            break


def _sample(job: Img2ImgPlan, pipe: Any, prepared: list[PreparedInit], latents: torch.Tensor, seeds: list[int],
            batch_no: int, progress: BatchProgress, infotext: dict[str, Any]) -> list[Image.Image]:
    """The img2img / inpaint pass (and the refiner after it) for one batch."""
    req, model = job.req, job.active.model
    generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
    prompts = [job.texts.encode_prompt] * len(seeds)
    negatives = [job.texts.encode_negative] * len(seeds)
    kwargs: dict[str, Any] = {"image": latents.to(device=pipe.device, dtype=pipe.dtype),
                              "strength": req.denoising_strength, "generator": generators, "output_type": "pil"}
    if job.inpaint:
        kwargs.update(_inpaint_kwargs(job, pipe, prepared, latents))
    elif accepts(pipe, "height"):
        kwargs.update(height=job.height, width=job.width)
    boundary = None
    if job.refiner is not None:
        boundary = schedule_boundary(req.refiner_switch_at, req.denoising_strength)
        kwargs.update(denoising_end=boundary, output_type="latent")
    spec = Pass(task="inpaint" if job.inpaint else "img2img", model=model, pipe=pipe, sampler=job.sampler,
                prompts=prompts, negatives=negatives, seeds=seeds, batch_index=batch_no, steps=req.steps,
                expected_steps=job.executed, kwargs=kwargs, extra_networks=job.texts.networks)
    out = run_pass(spec, req, hooks=job.hooks, progress=progress, infotext=infotext)
    if boundary is None or job.refiner is None:
        return out
    out = unpack_output_latents(model, out, job.width, job.height)
    if progress.stopped:
        return decode_latents(pipe, out)
    refine = refiner_pass(job.refiner, job.sampler, out, steps=req.steps, boundary=boundary, prompts=prompts,
                          negatives=negatives, seeds=seeds, batch_index=batch_no, generators=generators)
    return run_pass(refine, req, hooks=job.hooks, progress=progress, infotext=infotext)


def new_result(job: Img2ImgPlan) -> GenerationResult:
    return GenerationResult(seed_plan=job.seed_plan, width=job.width, height=job.height,
                            sampler_name=job.sampler.sampler_name, schedule_label=job.schedule_label,
                            model_name=job.active.info.name_for_extra, model_hash=job.active.shorthash,
                            job_timestamp=time.strftime("%Y%m%d%H%M%S"),
                            denoising_strength=job.req.denoising_strength)


def run_img2img(req: "Img2ImgRequest", active: "ActiveModel", control: JobControl, output: OutputOptions,
                styles: "StyleStore | None" = None, *, hooks: Sequence[SamplingHook] = (),
                refiners: RefinerSource | None = None, upscalers: "UpscalerSet | None" = None) -> GenerationResult:
    """img2img / inpaint / outpaint ``req`` on ``active`` (``upscalers`` is accepted for symmetry with txt2img)."""
    started = time.perf_counter()
    if not req.init_images:
        raise InvalidRequestError("img2img needs an init image: upload one first (Init image not found: init_images is empty)")
    req, notes = fit_to_model(req, active.model)
    images = [decode_request_image(data, f"init image {i + 1}") for i, data in enumerate(req.init_images)]
    mask = decode_request_image(req.mask, "mask") if req.mask else None
    if req.flux_kontext:
        from modules.generation.runners.kontext import run_kontext

        if mask is not None:
            raise InvalidRequestError("Kontext editing uses whole reference images: remove the mask")
        edited = run_kontext(req, active, [flatten(image) for image in images], control, output, styles, hooks=hooks)
        edited.warnings[:0] = notes
        return edited
    images, mask, protect = load_inputs(req, images, mask, active.model.family.size_multiple)
    job = plan_img2img(req, active, styles, hooks, refiners, output, images[0].size, mask is not None)
    result = new_result(job)
    result.clip_skip, result.warnings[:0] = req.clip_skip, notes
    kind = "inpaint" if mask is not None else "img2img"
    control.begin(req.n_iter, job.total_steps, text=f"{kind} {job.width}x{job.height}")
    run_batches(job, images, mask, protect, control, result)
    control.step(job.total_steps)
    result.seconds = time.perf_counter() - started
    return result
