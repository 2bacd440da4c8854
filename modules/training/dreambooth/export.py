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


def diffusers_folder_for(checkpoint_file: Path) -> Path:
    """Where the diffusers export of ``<name>.safetensors`` goes: ``<name>-diffusers/`` beside it (a name of its
    own, so a checkpoint reference never matches both)."""
    return checkpoint_file.with_name(checkpoint_file.stem + "-diffusers")


def write_diffusers(folder: Path, single_file: Path, *, cache_dir: Path, dtype: str,
                    metadata: Mapping[str, Any]) -> Path:
    """The diffusers folder of the written ``single_file``, through the studio's converter
    (:func:`modules.models.convert.formats.single_file_to_folder`), with the recipe in ``atelier_training.json``.

    An existing folder of that name (the request allowed overwriting it) is replaced only once the new one is
    complete."""
    import shutil
    import tempfile

    from modules.models.convert.formats import single_file_to_folder

    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    built = staging / folder.name
    try:
        single_file_to_folder(single_file, built, cache_dir=cache_dir, dtype=dtype)
        (built / "atelier_training.json").write_text(
            json.dumps({k: v if isinstance(v, (str, dict)) else str(v) for k, v in metadata.items()}, indent=2),
            encoding="utf-8")
        if folder.exists():
            old = staging / "replaced"
            folder.rename(old)
        built.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder
