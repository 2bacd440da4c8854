"""Cheap live previews: latents -> RGB with one linear projection (A1111's "Approx cheap").

No VAE is run: each latent channel contributes a fixed RGB weight, so a preview of a 512x512 SD image
costs one ``(4 x 3)`` matrix product over a 64x64 latent. The coefficients are those of A1111's
``sd_vae_approx.cheap_approximation`` (SD 1.x/2.x, SDXL) and of ComfyUI's ``latent_formats.Flux``
(16 channels, with a bias). They apply to the *normalised* latents the pipelines sample in, which are
what the step callbacks see.

A preview is built only when somebody asks for it: the sampler hands the job a ``preview_source``
closure (see :mod:`modules.generation.sampling.passes`) and :meth:`JobControl.preview` calls it on demand.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Final

import torch
from PIL import Image

if TYPE_CHECKING:
    from modules.settings import Settings

#: rows: latent channels, columns: R, G, B (A1111 ``cheap_approximation``, SD 1.x/2.x)
SD_COEFFS: Final = ((0.298, 0.207, 0.208), (0.187, 0.286, 0.173), (-0.158, 0.189, 0.264), (-0.184, -0.271, -0.473))
#: A1111 ``cheap_approximation`` for SDXL (its own VAE latent space)
SDXL_COEFFS: Final = ((0.3448, 0.4168, 0.4395), (-0.1953, -0.0290, 0.0250), (0.1074, 0.0886, -0.0163),
                      (-0.3730, -0.2499, -0.2088))
#: FLUX.1 16-channel latents (ComfyUI ``latent_formats.Flux``) and their bias
FLUX_COEFFS: Final = (
    (-0.0346, 0.0244, 0.0681), (0.0034, 0.0210, 0.0687), (0.0275, -0.0668, -0.0433), (-0.0174, 0.0160, 0.0617),
    (0.0859, 0.0721, 0.0329), (0.0004, 0.0383, 0.0115), (0.0405, 0.0861, 0.0915), (-0.0236, -0.0185, -0.0259),
    (-0.0245, 0.0250, 0.1180), (0.1008, 0.0755, -0.0421), (-0.0515, 0.0201, 0.0011), (0.0428, -0.0012, -0.0036),
    (0.0817, 0.0765, 0.0749), (-0.1264, -0.0522, -0.1103), (-0.0280, -0.0881, -0.0499), (-0.1262, -0.0982, -0.0778),
)
FLUX_BIAS: Final = (-0.0329, -0.0718, -0.0851)
#: the preview is enlarged (bilinear: a soft image reads better than 8x8 blocks) by this factor; latents are
#: 8x smaller than pixels
PREVIEW_SCALE: Final[int] = 8


def preview_every(settings: "Settings") -> int:
    """Steps between two live previews (0: none while sampling), from the studio's settings."""
    return settings.preview_every


def _family_id(family: Any) -> str:
    return str(getattr(family, "id", family) or "")


def projection(family: Any, channels: int) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """(coefficients ``(C, 3)``, bias ``(3,)`` or None) for a family's latents, None if unknown."""
    family_id = _family_id(family)
    if channels == 16:
        return torch.tensor(FLUX_COEFFS), torch.tensor(FLUX_BIAS)
    if channels == 4:
        return torch.tensor(SDXL_COEFFS if family_id.startswith("sdxl") else SD_COEFFS), None
    return None


def unpack(latents: torch.Tensor, size: tuple[int, int] | None, factor: int = 8) -> torch.Tensor:
    """FLUX packs 2x2 latent patches into tokens ``(B, L, C*4)``; give them back as ``(B, C, h, w)``.

    ``size`` is the image size in pixels ``(width, height)``; without it a square image is assumed.
    """
    if latents.ndim != 3:
        return latents
    batch, tokens, packed = latents.shape
    if size is not None and size[0] and size[1]:
        h, w = size[1] // (factor * 2), size[0] // (factor * 2)
    else:
        h = w = int(math.isqrt(tokens))
    if h * w != tokens:
        h, w = 1, tokens
    channels = packed // 4
    x = latents.reshape(batch, h, w, channels, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(batch, channels, h * 2, w * 2)


def _to_rgb(sample: torch.Tensor, family: Any) -> torch.Tensor:
    """One latent ``(C, h, w)`` -> ``(3, h, w)`` in [0, 1]."""
    sample = sample.detach().float().cpu()
    proj = projection(family, sample.shape[0])
    if proj is None:  # an unknown latent layout: show its first three channels, min-max scaled
        first = sample[:3] if sample.shape[0] >= 3 else sample[:1].repeat(3, 1, 1)
        low, high = first.min(), first.max()
        return (first - low) / (high - low + 1e-6)
    coeffs, bias = proj
    rgb = torch.einsum("lxy,lr->rxy", sample, coeffs)
    if bias is not None:
        rgb = rgb + bias.view(3, 1, 1)
    return ((rgb + 1.0) / 2.0).clamp(0.0, 1.0)


def latents_to_preview(latents: torch.Tensor, family: Any, size: tuple[int, int] | None = None,
                       *, scale: int = PREVIEW_SCALE) -> Image.Image:
    """A cheap RGB preview of a batch of latents (a grid when the batch has several images).

    ``family`` is a :class:`~modules.models.families.ModelFamily` or its id (``"sd1"``, ``"sdxl"``,
    ``"flux-dev"``...); ``size`` the pixel size ``(width, height)``, needed only for packed FLUX latents.
    """
    batch = unpack(latents, size)
    if batch.ndim == 3:
        batch = batch.unsqueeze(0)
    tiles = [_to_rgb(sample, family) for sample in batch]
    columns = math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / columns)
    _, h, w = tiles[0].shape
    grid = torch.zeros(3, rows * h, columns * w)
    for index, tile in enumerate(tiles):
        r, c = divmod(index, columns)
        grid[:, r * h:(r + 1) * h, c * w:(c + 1) * w] = tile
    pixels = (grid * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    image = Image.fromarray(pixels, "RGB")
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.Resampling.BILINEAR)
    return image
