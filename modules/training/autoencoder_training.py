"""AutoencoderKL training: reconstruction plus a small KL term, and the latent scaling factor."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL


@dataclass(frozen=True)
class AutoencoderLoss:
    """The loss to back-propagate and its parts (floats for logging)."""

    loss: torch.Tensor
    reconstruction: float
    kl: float


def foreground_weights(pixel_values: torch.Tensor, weight: float, threshold: float = 0.1) -> torch.Tensor:
    """Per-pixel weights (N, 1, H, W): 1 + `weight` where a pixel differs from the median of the image border.

    On images of small objects over plain backgrounds the background dominates a plain pixel loss and
    an autoencoder first learns to drop the objects; this weighting counters that.
    """
    border = torch.cat(
        [pixel_values[..., 0, :], pixel_values[..., -1, :], pixel_values[..., :, 0], pixel_values[..., :, -1]], dim=-1
    )
    background = border.median(dim=-1).values[..., None, None]
    differs = (pixel_values - background).abs().amax(dim=1, keepdim=True) > threshold
    return 1.0 + weight * differs.float()


def edge_loss(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean L1 distance between the neighbouring-pixel differences of two images.

    A plain pixel loss is content to blur an edge it is unsure of; this term is large for a blurred
    or misplaced edge, so it rewards the crisp outlines that tell a hexagon from a circle.
    """
    dx = (reconstruction.diff(dim=-1) - target.diff(dim=-1)).abs().mean()
    dy = (reconstruction.diff(dim=-2) - target.diff(dim=-2)).abs().mean()
    return dx + dy


def autoencoder_loss(
    vae: AutoencoderKL,
    pixel_values: torch.Tensor,
    *,
    kl_weight: float = 1e-6,
    l1_weight: float = 1.0,
    foreground_weight: float = 0.0,
    edge_weight: float = 0.0,
    generator: torch.Generator | None = None,
) -> AutoencoderLoss:
    """(Foreground-weighted) MSE + L1 reconstruction of a sampled posterior plus `kl_weight` × KL(q(z|x) || N(0, I)),
    plus `edge_weight` × L1 between the images' horizontal and vertical differences (see `edge_loss`)."""
    posterior = vae.encode(pixel_values).latent_dist
    # .float(): under bf16 autocast the decoder's output is bf16; the loss is computed in fp32 all the same
    reconstruction = vae.decode(posterior.sample(generator=generator)).sample.float()
    weights = foreground_weights(pixel_values, foreground_weight) if foreground_weight > 0 else None
    error = reconstruction - pixel_values
    mse = F.mse_loss(reconstruction, pixel_values)
    if weights is None:
        recon = mse + l1_weight * error.abs().mean()
    else:
        recon = ((error.pow(2) + l1_weight * error.abs()) * weights).mean() / weights.mean()
    if edge_weight > 0:
        recon = recon + edge_weight * edge_loss(reconstruction, pixel_values)
    kl = posterior.kl().mean() / pixel_values[0].numel()
    loss = recon + kl_weight * kl
    return AutoencoderLoss(loss=loss, reconstruction=float(mse.detach()), kl=float(kl.detach()))


@torch.no_grad()
def measure_scaling_factor(vae: AutoencoderKL, batches: Iterable[torch.Tensor]) -> float:
    """1 / std of posterior-mean latents over `batches` (the SD convention for `scaling_factor`)."""
    latents = torch.cat([vae.encode(batch).latent_dist.mean for batch in batches])
    return float(1.0 / latents.std())


@torch.no_grad()
def reconstruction_mse(vae: AutoencoderKL, batches: Iterable[torch.Tensor]) -> float:
    """Mean squared error of mode-decoded reconstructions (pixels on the [-1, 1] scale)."""
    errors = [F.mse_loss(vae.decode(vae.encode(b).latent_dist.mode()).sample, b).item() for b in batches]
    return sum(errors) / len(errors)
