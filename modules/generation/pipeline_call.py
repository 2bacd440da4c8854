"""How one sampling call is made for each model architecture.

The runner is architecture-agnostic; the small differences between UNet (SD/SDXL) and FLUX
pipelines (latent packing, guidance arguments) are declared here, keyed by the
``architecture`` field of the model-family registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import torch

if TYPE_CHECKING:
    from modules.generation.requests import GenerationRequest
    from modules.models.loader import LoadedModel


@dataclass(frozen=True)
class ArchitectureCall:
    """Per-architecture pieces of a txt2img pipeline call."""

    prepare_latents: Callable[["LoadedModel", torch.Tensor], torch.Tensor]
    guidance_kwargs: Callable[["LoadedModel", "GenerationRequest"], dict[str, Any]]


def _unet_latents(model: "LoadedModel", noise: torch.Tensor) -> torch.Tensor:
    return noise  # the pipeline multiplies by scheduler.init_noise_sigma itself


def _unet_guidance(model: "LoadedModel", req: "GenerationRequest") -> dict[str, Any]:
    kwargs: dict[str, Any] = {"guidance_scale": req.cfg_scale,
                              "negative_prompt": [req.negative_prompt] * req.batch_size}
    if req.clip_skip > 1:  # A1111 "Clip skip 2" = diffusers clip_skip=1 (skip one layer)
        kwargs["clip_skip"] = req.clip_skip - 1
    return kwargs


def _flux_latents(model: "LoadedModel", noise: torch.Tensor) -> torch.Tensor:
    from diffusers import FluxPipeline

    b, c, h, w = noise.shape
    return FluxPipeline._pack_latents(noise, b, c, h, w)


def _flux_guidance(model: "LoadedModel", req: "GenerationRequest") -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if model.family.id == "flux-dev":
        kwargs["guidance_scale"] = getattr(req, "distilled_cfg_scale", 3.5)
    else:
        kwargs["guidance_scale"] = 0.0
    if req.cfg_scale > 1.0 and req.negative_prompt:
        kwargs["true_cfg_scale"] = req.cfg_scale
        kwargs["negative_prompt"] = [req.negative_prompt] * req.batch_size
    return kwargs


ARCHITECTURE_CALLS: dict[str, ArchitectureCall] = {
    "ldm-unet": ArchitectureCall(_unet_latents, _unet_guidance),
    "flux": ArchitectureCall(_flux_latents, _flux_guidance),
}
