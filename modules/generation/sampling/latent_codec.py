"""Pixels <-> normalised latents with a loaded model's VAE, and the derived pipelines of a model.

"Normalised" latents are what the diffusers pipelines sample in: SD ``z * scaling_factor``, SDXL the
same (or ``(z - mean) * scaling_factor / std`` when the VAE config carries latents statistics), FLUX
``(z - shift_factor) * scaling_factor``, always unpacked ``(B, C, h, w)``. Encoding takes the mean of
the VAE posterior (deterministic; A1111 samples it, a difference far below the VAE's own error).

The img2img/inpaint runners hand these latents to the pipelines as ``image`` (every diffusers
img2img/inpaint pipeline passes a tensor with the VAE's latent channel count through unencoded), so
a pipeline's first draw from each per-image generator is the A1111 seed noise.
"""

from __future__ import annotations

import contextlib
import inspect
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np
import torch
from PIL import Image

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline

    from modules.models.loader import LoadedModel


def derived_pipeline(model: "LoadedModel", task: str) -> "DiffusionPipeline":
    """The family's ``task`` pipeline ("txt2img" | "img2img" | "inpaint") sharing the model's modules.

    Built directly from the loaded pipeline's components and options (``from_pipe`` would also cast
    every shared module to float32 unless told otherwise, and log about it on every call).
    """
    from modules.generation.validation import InvalidRequestError
    from modules.models.pipeline_build import assemble_pipeline

    family = model.family
    if task not in family.pipelines:
        raise InvalidRequestError(f"{family.label} has no {task} pipeline")
    base = model.pipeline
    if type(base).__name__ == family.pipelines[task]:
        return base
    pipe = assemble_pipeline(family.pipelines[task], dict(base.config), base.components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def accepts(pipe: Any, name: str) -> bool:
    """Whether the pipeline's ``__call__`` takes argument ``name``."""
    return name in inspect.signature(pipe.__call__).parameters


def to_tensor(images: Sequence[Image.Image]) -> torch.Tensor:
    """RGB images (same size) -> ``(B, 3, H, W)`` float32 in [-1, 1]."""
    arrays = [np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0 for image in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def _vae_stats(vae: Any, channels: int, like: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    config = vae.config
    mean, std = getattr(config, "latents_mean", None), getattr(config, "latents_std", None)
    if mean is None or std is None:
        return None, None
    view = (1, channels, 1, 1)
    return (torch.tensor(mean).view(view).to(like.device, like.dtype),
            torch.tensor(std).view(view).to(like.device, like.dtype))


@contextlib.contextmanager
def _vae_precision(vae: Any) -> Iterator[torch.dtype]:
    """Run the VAE in float32 when its config asks for it (SDXL's fp16-overflowing VAE), as diffusers does."""
    dtype = vae.dtype
    upcast = bool(getattr(vae.config, "force_upcast", False)) and dtype == torch.float16
    if upcast:
        vae.to(dtype=torch.float32)
    try:
        yield torch.float32 if upcast else dtype
    finally:
        if upcast:
            vae.to(dtype=dtype)


def encode_images(pipe: "DiffusionPipeline", images: Sequence[Image.Image]) -> torch.Tensor:
    """RGB images (sizes multiple of the VAE factor) -> normalised latents ``(B, C, h, w)`` float32."""
    return encode_pixels(pipe, to_tensor(images))


@torch.no_grad()
def encode_pixels(pipe: "DiffusionPipeline", pixels: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` pixels in [-1, 1] -> normalised latents ``(B, C, h, w)`` float32."""
    vae = pipe.vae
    with _vae_precision(vae) as dtype:
        posterior = vae.encode(pixels.to(device=vae.device, dtype=dtype)).latent_dist
        latents = posterior.mode().float()
    config = vae.config
    shift = getattr(config, "shift_factor", None) or 0.0
    mean, std = _vae_stats(vae, latents.shape[1], latents)
    if mean is not None and std is not None:
        return (latents - mean) * config.scaling_factor / std
    return (latents - shift) * config.scaling_factor


@torch.no_grad()
def decode_latents(pipe: "DiffusionPipeline", latents: torch.Tensor) -> list[Image.Image]:
    """Normalised latents -> RGB images (the inverse of :func:`encode_images`)."""
    vae = pipe.vae
    config = vae.config
    latents = latents.float()
    mean, std = _vae_stats(vae, latents.shape[1], latents)
    if mean is not None and std is not None:
        raw = latents * std / config.scaling_factor + mean
    else:
        raw = latents / config.scaling_factor + (getattr(config, "shift_factor", None) or 0.0)
    with _vae_precision(vae) as dtype:
        decoded = vae.decode(raw.to(device=vae.device, dtype=dtype), return_dict=False)[0]
    pixels = ((decoded.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(array) for array in pixels]


def unpack_output_latents(model: "LoadedModel", latents: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """A pipeline's ``output_type="latent"`` result as ``(B, C, h, w)`` (FLUX returns packed patches)."""
    if model.family.architecture == "flux" and latents.ndim == 3:
        from diffusers import FluxPipeline

        return FluxPipeline._unpack_latents(latents, height, width, model.vae_scale_factor)
    return latents


def blank_inpaint_conditioning(pipe: "DiffusionPipeline", width: int, height: int, batch: int) -> dict[str, Any]:
    """Inpaint-pipeline kwargs for "everything masked" (txt2img / hires on an inpainting checkpoint):
    a white mask and the latents of a grey masked image, as A1111's ``txt2img_image_conditioning``."""
    grey = Image.new("RGB", (width, height), (127, 127, 127))
    cond = encode_images(pipe, [grey]).repeat(batch, 1, 1, 1).to(device=pipe.device, dtype=pipe.dtype)
    return {"mask_image": Image.new("L", (width, height), 255), "masked_image_latents": cond,
            "height": height, "width": width}
