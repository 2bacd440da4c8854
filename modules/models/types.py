"""What a model load takes and gives: :class:`LoadOptions` and :class:`LoadedModel` (and dtype names).

Kept apart from :mod:`modules.models.loader` so that the per-architecture loaders (FLUX's) and the
rest of the studio can name these types without importing the loader that dispatches to them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from modules.models.families import ModelFamily

if TYPE_CHECKING:
    import torch
    from diffusers import DiffusionPipeline

DTYPES = ("float32", "float16", "bfloat16")


@dataclass(frozen=True)
class LoadOptions:
    """How to load: target device/dtype, pickle opt-in, SD 2.x prediction override, tokenizer cache,
    and an optional external VAE file replacing the checkpoint's own (A1111 ``models/VAE``)."""

    device: str = "cpu"
    dtype: str = "float32"
    allow_pickle: bool = False
    prediction_type: str | None = None
    cache_dir: Path = Path("cache")
    vae: Path | None = None
    vae_dir: Path | None = None            # where FLUX's separate VAE file is looked up (models/VAE)
    text_encoder_dir: Path | None = None   # where FLUX's CLIP-L and T5 files are looked up (models/text_encoder)


@dataclass
class LoadedModel:
    """A loaded model and the facts the generation code needs.

    ``pipeline`` is the family's pipeline for ``task``: txt2img normally, inpaint for inpainting
    models (9-channel UNet), img2img for the SDXL refiner (it has no txt2img pipeline).
    """

    path: Path
    name: str
    family: ModelFamily
    variant: Mapping[str, object]
    pipeline: "DiffusionPipeline"
    prediction_type: str
    scheduler_config: dict
    native_size: tuple[int, int]
    latent_channels: int
    vae_scale_factor: int
    task: str = "txt2img"
    configs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def torch_dtype(value: "str | torch.dtype") -> "torch.dtype":
    """``"float16"`` etc. -> torch dtype (torch dtypes pass through)."""
    import torch

    if isinstance(value, torch.dtype):
        return value
    if value not in DTYPES:
        raise ValueError(f"unknown dtype '{value}' (use one of {', '.join(DTYPES)})")
    return getattr(torch, value)
