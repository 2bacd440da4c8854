"""How one sampling call is made for each model architecture.

The runner is architecture-agnostic; the differences between UNet (SD/SDXL) and FLUX
pipelines are declared here, keyed by the ``architecture`` field of the model-family registry:

- latent layout (FLUX packs 2×2 patches),
- conditioning: SD/SDXL prompts go through A1111's prompt syntax (weights, 75-token chunks,
  BREAK, clip skip, prompt editing and alternation, swapped per step by a callback); FLUX's
  T5 has no token weights, so attention markup is stripped and the prompt is passed as text,
- guidance arguments (CFG for SD; distilled guidance, optional true CFG and the T5 prompt length
  ``max_sequence_length`` for FLUX).

``conditioning`` takes the pipeline actually called (an img2img/inpaint pipeline derived from the
model's, or one a hook swapped in; they share the text encoders) and the number of steps that pass
runs, over which prompt editing (``[a:b:0.5]``) is scheduled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import torch

if TYPE_CHECKING:
    from modules.generation.requests import GenerationRequest
    from modules.models.loader import LoadedModel

StepCallback = Callable[[Any, int, Any, dict[str, Any]], dict[str, Any]]


@dataclass
class Conditioning:
    """Pipeline kwargs for the prompts, plus an optional per-step callback (prompt editing)."""

    kwargs: dict[str, Any]
    callback: StepCallback | None = None
    tensor_inputs: list[str] = field(default_factory=lambda: ["latents"])


@dataclass(frozen=True)
class ArchitectureCall:
    """Per-architecture pieces of a pipeline call (txt2img, img2img, inpaint, hires, refiner)."""

    prepare_latents: Callable[["LoadedModel", torch.Tensor], torch.Tensor]
    conditioning: Callable[["LoadedModel", Any, "GenerationRequest", list[str], list[str], int], Conditioning]
    guidance_kwargs: Callable[["LoadedModel", "GenerationRequest"], dict[str, Any]]


def _unet_latents(model: "LoadedModel", noise: torch.Tensor) -> torch.Tensor:
    return noise  # the pipeline multiplies by scheduler.init_noise_sigma itself


def _unet_conditioning(model: "LoadedModel", pipe: Any, req: "GenerationRequest", prompts: list[str],
                       negatives: list[str], steps: int) -> Conditioning:
    from modules.generation.prompts.conditioning import ScheduledConditioning

    sched = ScheduledConditioning.build(pipe, model.family.id, prompts, negatives, steps=steps,
                                        clip_skip=req.clip_skip)
    return Conditioning(kwargs=sched.initial_kwargs(),
                        callback=None if sched.is_static else sched.callback,
                        tensor_inputs=sorted({"latents", *sched.tensor_inputs}))


def _unet_guidance(model: "LoadedModel", req: "GenerationRequest") -> dict[str, Any]:
    return {"guidance_scale": req.cfg_scale}


def _flux_latents(model: "LoadedModel", noise: torch.Tensor) -> torch.Tensor:
    from diffusers import FluxPipeline

    b, c, h, w = noise.shape
    return FluxPipeline._pack_latents(noise, b, c, h, w)


def _flux_conditioning(model: "LoadedModel", pipe: Any, req: "GenerationRequest", prompts: list[str],
                       negatives: list[str], steps: int) -> Conditioning:
    from modules.generation.prompts.parser import get_learned_conditioning_prompt_schedules, strip_attention

    # T5 has no token weights; prompt editing resolves to the text of the final step
    final = [schedule[-1][1] for schedule in get_learned_conditioning_prompt_schedules(prompts, steps)]
    kwargs: dict[str, Any] = {"prompt": [strip_attention(p) for p in final]}
    if req.cfg_scale > 1.0 and any(negatives):
        kwargs["negative_prompt"] = [strip_attention(n) for n in negatives]
    return Conditioning(kwargs=kwargs)


def _flux_guidance(model: "LoadedModel", req: "GenerationRequest") -> dict[str, Any]:
    from modules.generation.validation import resolve_max_sequence_length

    kwargs: dict[str, Any] = {"max_sequence_length": resolve_max_sequence_length(req.max_sequence_length, model)}
    # dev embeds a distilled guidance value; schnell has no guidance embedding (guidance 0)
    kwargs["guidance_scale"] = req.distilled_cfg_scale if model.family.id == "flux-dev" else 0.0
    if req.cfg_scale > 1.0 and req.negative_prompt:
        kwargs["true_cfg_scale"] = req.cfg_scale
    return kwargs


ARCHITECTURE_CALLS: dict[str, ArchitectureCall] = {
    "ldm-unet": ArchitectureCall(_unet_latents, _unet_conditioning, _unet_guidance),
    "flux": ArchitectureCall(_flux_latents, _flux_conditioning, _flux_guidance),
}
