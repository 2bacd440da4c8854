"""A1111's hires fix for txt2img (``StableDiffusionProcessingTxt2Img`` ``init`` / ``sample_hr_pass``).

1. The first pass runs at ``width x height``.
2. Target: ``hr_scale`` x the size, or ``hr_resize_x/y`` (one of them: the other follows the aspect
   ratio; both: scale to cover, then crop the latents centrally, A1111's ``truncate_x/y``). Sizes are
   rounded down to the family's multiple (8; 16 for FLUX).
3. Latent upscalers interpolate the first pass's latents; any other upscaler (Lanczos, Nearest,
   ESRGAN models) upscales the decoded images, which are encoded again; "None" resizes them plainly (Lanczos).
4. A second, img2img pass runs at ``denoising_strength`` for ``hr_second_pass_steps`` (0: ``steps``),
   optionally with another sampler/schedule and ``hr_prompt``/``hr_negative_prompt``. Its noise is the
   A1111 seed noise at the new size (variation seeds shape the first pass only).

Infotext (A1111 keys): ``Denoising strength``, ``Hires sampler``, ``Hires prompt``, ``Hires negative
prompt``, ``Hires schedule type``, ``Hires upscale`` or ``Hires resize``, ``Hires steps``, ``Hires upscaler``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modules.generation.sampling.latent_codec import accepts, blank_inpaint_conditioning, derived_pipeline, encode_images
from modules.generation.sampling.passes import Pass, strength_steps
from modules.generation.validation import InvalidRequestError, check_sampler_for_model
from modules.images.resize import resize_image
from modules.images.upscalers import LATENT_MODES, UpscalerError, UpscalerSet, interpolate_latents

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from modules.generation.requests import Txt2ImgRequest
    from modules.generation.sampling.samplers import ResolvedSampler
    from modules.models.loader import LoadedModel


@dataclass(frozen=True)
class HiresPlan:
    """Everything the second pass needs, decided before the job starts."""

    upscale_width: int          # size the first pass is upscaled to
    upscale_height: int
    width: int                  # final size (after the central crop of hr_resize_x + hr_resize_y)
    height: int
    upscaler: str
    steps: int
    executed_steps: int
    sampler: "ResolvedSampler"
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def is_latent(self) -> bool:
        return self.upscaler in LATENT_MODES


#: A1111's "None" upscaler: on hires fix, the decoded first pass is resized with Lanczos (``images.resize_image``)
NO_UPSCALER = "None"


def _floor(value: int, multiple: int) -> int:
    return max(multiple, value // multiple * multiple)


def target_size(req: "Txt2ImgRequest", width: int, height: int,
                multiple: int) -> tuple[int, int, int, int]:
    """(upscale_w, upscale_h, final_w, final_h) of A1111's ``calculate_target_resolution``."""
    rx, ry = req.hr_resize_x, req.hr_resize_y
    if rx == 0 and ry == 0:
        up_w, up_h = int(width * req.hr_scale), int(height * req.hr_scale)
        final_w, final_h = up_w, up_h
    elif ry == 0:
        up_w, up_h = rx, rx * height // width
        final_w, final_h = up_w, up_h
    elif rx == 0:
        up_w, up_h = ry * width // height, ry
        final_w, final_h = up_w, up_h
    else:
        if width / height < rx / ry:
            up_w, up_h = rx, rx * height // width
        else:
            up_w, up_h = ry * width // height, ry
        final_w, final_h = rx, ry
    return (_floor(up_w, multiple), _floor(up_h, multiple), _floor(final_w, multiple), _floor(final_h, multiple))


def plan_hires(req: "Txt2ImgRequest", model: "LoadedModel", width: int, height: int, base: "ResolvedSampler",
               upscalers: UpscalerSet, *, prompt: str, negative: str, hr_prompt: str,
               hr_negative: str) -> HiresPlan:
    """Validate the hires fields against the model and build the plan (InvalidRequestError otherwise)."""
    from modules.generation.sampling.samplers import resolve_sampler

    family = model.family
    up_w, up_h, final_w, final_h = target_size(req, width, height, family.size_multiple)
    for label, value in (("width", up_w), ("height", up_h)):
        if value > family.max_size:
            raise InvalidRequestError(f"hires {label} {value} is above {family.max_size} for {family.label}; "
                                      f"lower hr_scale or hr_resize")
    try:
        # "None" (first in A1111's upscaler list) resizes the decoded image plainly (Lanczos), as A1111 does
        upscaler = NO_UPSCALER if req.hr_upscaler.strip().lower() == "none" else upscalers.resolve(req.hr_upscaler)
    except UpscalerError as exc:
        raise InvalidRequestError(str(exc)) from None
    sampler = base
    if req.hr_sampler_name is not None or req.hr_scheduler is not None:
        sampler = resolve_sampler(req.hr_sampler_name or base.sampler_name, req.hr_scheduler or base.schedule)
        check_sampler_for_model(sampler, model)
    steps = req.hr_second_pass_steps or req.steps

    params: dict[str, Any] = {"Denoising strength": req.denoising_strength}
    if sampler.sampler_name != base.sampler_name:
        params["Hires sampler"] = sampler.sampler_name
    if hr_prompt != prompt:
        params["Hires prompt"] = hr_prompt
    if hr_negative != negative:
        params["Hires negative prompt"] = hr_negative
    if sampler.schedule != base.schedule:
        params["Hires schedule type"] = sampler.schedule_label_for(model.prediction_type)
    if req.hr_resize_x == 0 and req.hr_resize_y == 0:
        params["Hires upscale"] = req.hr_scale
    else:
        params["Hires resize"] = f"{req.hr_resize_x}x{req.hr_resize_y}"
    if req.hr_second_pass_steps:
        params["Hires steps"] = req.hr_second_pass_steps
    params["Hires upscaler"] = upscaler
    return HiresPlan(upscale_width=up_w, upscale_height=up_h, width=final_w, height=final_h, upscaler=upscaler,
                     steps=steps, executed_steps=strength_steps(model, steps, req.denoising_strength),
                     sampler=sampler, params=params)


def upscale_first_pass(plan: HiresPlan, model: "LoadedModel", first: Any, upscalers: UpscalerSet) -> "torch.Tensor":
    """First-pass output (latents for latent modes, else PIL images) -> second-pass input latents."""
    factor = model.vae_scale_factor
    pipe = derived_pipeline(model, "img2img")
    if plan.is_latent:
        latents = interpolate_latents(first, plan.upscale_height // factor, plan.upscale_width // factor,
                                      plan.upscaler)
    else:
        images: list["Image.Image"] = list(first)
        resized = [resize_image(0, image, plan.upscale_width, plan.upscale_height, upscaler=plan.upscaler,
                                upscalers=upscalers) for image in images]
        latents = encode_images(pipe, resized)
    tx = (plan.upscale_width - plan.width) // factor
    ty = (plan.upscale_height - plan.height) // factor
    return latents[:, :, ty // 2:latents.shape[2] - (ty + 1) // 2, tx // 2:latents.shape[3] - (tx + 1) // 2]


def hires_pass(plan: HiresPlan, model: "LoadedModel", latents: "torch.Tensor", *, strength: float,
               prompts: list[str], negatives: list[str], seeds: list[int], batch_index: int, generators: list[Any],
               output_type: str = "pil", denoising_end: float | None = None) -> Pass:
    """The second pass: img2img on the upscaled latents (which the pipeline noises with the seed noise)."""
    inpaint_model = model.task == "inpaint"
    pipe = derived_pipeline(model, "inpaint" if inpaint_model else "img2img")
    kwargs: dict[str, Any] = {"image": latents.to(device=pipe.device, dtype=pipe.dtype), "strength": strength,
                              "generator": generators, "output_type": output_type}
    if inpaint_model:
        kwargs.update(blank_inpaint_conditioning(pipe, plan.width, plan.height, latents.shape[0]))
    elif accepts(pipe, "height"):
        kwargs.update(height=plan.height, width=plan.width)
    if denoising_end is not None:
        kwargs["denoising_end"] = denoising_end
    return Pass(task="hires", model=model, pipe=pipe, sampler=plan.sampler, prompts=prompts, negatives=negatives,
                seeds=seeds, batch_index=batch_index, steps=plan.steps, expected_steps=plan.executed_steps,
                kwargs=kwargs)
