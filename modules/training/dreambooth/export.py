"""The trained pipeline as one ``.safetensors`` checkpoint in the original (LDM) layout.

The layout is the converter's (:mod:`modules.models.convert.ldm`: ``model.diffusion_model.``,
``first_stage_model.``, ``cond_stage_model.transformer.text_model.`` with the transformers-5 prefix
normalised), so A1111, ComfyUI, ``from_single_file`` and the studio's own checkpoint list load it. What the
header shapes cannot tell (a non-standard config) goes into ``atelier.components``, the prediction type into
``modelspec.prediction_type``, and the training recipe into ``atelier_recipe``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from modules.models.types import LoadedModel

NETWORKS = ("unet", "vae", "text_encoder")


def checkpoint_state(model: "LoadedModel", dtype: str = "float16") -> dict[str, Any]:
    """The pipeline's UNet, VAE and text encoder as one LDM-layout state dict in ``dtype``."""
    import torch

    from modules.models.convert.ldm import diffusers_to_ldm

    pipe = model.pipeline
    states = {name: getattr(pipe, name).state_dict() for name in NETWORKS}
    state = diffusers_to_ldm(states["unet"], states["vae"], states["text_encoder"], unet_config=pipe.unet.config,
                             family=model.family.id)
    target = getattr(torch, dtype)
    return {k: v.detach().to("cpu", target if v.is_floating_point() else v.dtype) for k, v in state.items()}


def write_checkpoint(path: Path, model: "LoadedModel", *, dtype: str, metadata: Mapping[str, Any]) -> Path:
    """Write the checkpoint atomically; returns its path."""
    from modules.models.convert.ldm import components_metadata, save_ldm_checkpoint

    pipe = model.pipeline
    configs = {"unet": dict(pipe.unet.config), "vae": dict(pipe.vae.config),
               "text_encoder": pipe.text_encoder.config.to_dict()}
    meta = {**components_metadata(model.family, configs), "format": "pt",
            "modelspec.prediction_type": "v" if model.prediction_type == "v_prediction" else "epsilon",
            **{k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}}
    return save_ldm_checkpoint(path, checkpoint_state(model, dtype), meta)
