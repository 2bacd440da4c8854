"""Export diffusers components to an original LDM/SGM single-file checkpoint (A1111/ComfyUI layout).

Generic and config-driven (any block count, training.md §7.3): UNet under ``model.diffusion_model.``,
VAE under ``first_stage_model.`` (mid-attention projections written as 1x1 convolutions), CLIP-L under
``cond_stage_model.transformer.text_model.*`` (``text_model.`` always written, also for transformers-5
prefix-less state dicts) and OpenCLIP encoders in their ``transformer.resblocks.*`` layout with fused
``in_proj`` q/k/v. SD 2.x files get the unused final OpenCLIP layer, ``text_projection`` and
``logit_scale`` as dummies, as kohya does, so the layer count matches released checkpoints.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Mapping

import torch
from torch import Tensor

from modules.models.arch.clip import CLIP_SHAPE_KEYS
from modules.models.arch.overlay import COMPONENTS_METADATA_KEY, family_config
from modules.models.arch.unet import UNET_SHAPE_KEYS
from modules.models.arch.vae import VAE_SHAPE_KEYS
from modules.models.convert.ldm_keys import (
    VAE_CONV_ATTENTION, clip_key_map, openclip_key_map, unet_key_map, vae_key_map,
)
from modules.models.families import ModelFamily, TextEncoderSpec, get_family

StateDict = Mapping[str, Tensor]
#: OpenCLIP's learned temperature is stored in released checkpoints as ln(100).
LOGIT_SCALE = math.log(100.0)


def diffusers_to_ldm(
    unet_sd: StateDict,
    vae_sd: StateDict,
    text_encoder_sd: StateDict | None,
    *,
    unet_config: Mapping[str, object],
    family: str = "sd1",
    text_encoder_2_sd: StateDict | None = None,
) -> dict[str, Tensor]:
    """Rename (and reshape where the layouts differ) diffusers state dicts into one LDM state dict."""
    fam = get_family(family)
    if fam.architecture != "ldm-unet":
        raise ValueError(f"family '{family}' has no LDM single-file layout")
    out: dict[str, Tensor] = {}
    for key, ldm in unet_key_map(unet_sd, unet_config).items():
        out[fam.unet_prefix + ldm] = unet_sd[key]
    levels = len({key.split(".")[2] for key in vae_sd if key.startswith("decoder.up_blocks.")})
    for key, ldm in vae_key_map(vae_sd, {"up_block_types": [None] * levels}).items():
        tensor = vae_sd[key]
        if ".mid.attn_1." in ldm and ldm.rsplit(".mid.attn_1.", 1)[1] in VAE_CONV_ATTENTION and tensor.ndim == 2:
            tensor = tensor.reshape(*tensor.shape, 1, 1)
        out[fam.vae_prefix + ldm] = tensor
    sources = {"text_encoder": text_encoder_sd, "text_encoder_2": text_encoder_2_sd}
    for spec in fam.text_encoders:
        state = sources[spec.component]
        if state is None:
            raise ValueError(f"family '{family}' needs a {spec.component} state dict")
        out.update(_export_text_encoder(spec, state))
    return out


def _export_text_encoder(spec: TextEncoderSpec, state: StateDict) -> dict[str, Tensor]:
    if spec.layout == "clip":
        return {spec.prefix + ldm: state[key] for key, ldm in clip_key_map(state).items()}
    parts: dict[str, dict[str, Tensor]] = {}
    out: dict[str, Tensor] = {}
    for key, (ldm, part) in openclip_key_map(state).items():
        tensor = state[key]
        if part is not None:
            parts.setdefault(ldm, {})[part] = tensor
        elif ldm == "text_projection":
            out[ldm] = tensor.T.contiguous()
        else:
            out[ldm] = tensor
    for ldm, qkv in parts.items():
        out[ldm] = torch.cat([qkv["q"], qkv["k"], qkv["v"]], dim=0)
    reference = out["token_embedding.weight"]
    if spec.drop_last_layer:
        _add_dummy_final_layer(out, reference)
    out.setdefault("logit_scale", torch.tensor(LOGIT_SCALE, dtype=reference.dtype))
    return {spec.prefix + key: value for key, value in out.items()}


def _add_dummy_final_layer(out: dict[str, Tensor], reference: Tensor) -> None:
    """Append a copy of the last resblock plus an identity ``text_projection`` (never used by SD 2.x)."""
    last = max(int(key.split(".")[2]) for key in out if key.startswith("transformer.resblocks."))
    for key in [k for k in out if k.startswith(f"transformer.resblocks.{last}.")]:
        out[key.replace(f".resblocks.{last}.", f".resblocks.{last + 1}.", 1)] = out[key].clone()
    hidden = reference.shape[1]
    out.setdefault("text_projection", torch.eye(hidden, dtype=reference.dtype))


def save_ldm_checkpoint(path: Path, state_dict: Mapping[str, Tensor], metadata: Mapping[str, str]) -> Path:
    """Write a safetensors file atomically (temp file + rename); metadata values must be strings."""
    from safetensors.torch import save_file

    bad = [key for key, value in metadata.items() if not isinstance(key, str) or not isinstance(value, str)]
    if bad:
        raise TypeError(f"safetensors metadata must map str to str (bad keys: {bad})")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {key: value.detach().to("cpu").contiguous() for key, value in state_dict.items()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=dict(metadata))
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a model file is as readable as any other output
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


_SHAPE_KEYS = {"unet": UNET_SHAPE_KEYS, "vae": VAE_SHAPE_KEYS, "text_encoder": CLIP_SHAPE_KEYS,
               "text_encoder_2": CLIP_SHAPE_KEYS}
_IGNORED = frozenset({"architectures", "_name_or_path", "torch_dtype", "dtype", "transformers_version"})


def components_metadata(family: str | ModelFamily, configs: Mapping[str, Mapping[str, object]]) -> dict[str, str]:
    """``{"atelier.components": json}`` holding what the header shapes cannot tell the loader.

    ``configs`` maps component names ("unet", "vae", "text_encoder", "text_encoder_2") to their diffusers
    / transformers config dicts; only values that differ from the shipped family config and are not
    derived from tensor shapes are kept (head counts, norm groups, sample size, ...).
    """
    fam = family if isinstance(family, ModelFamily) else get_family(family)
    overrides: dict[str, dict[str, object]] = {}
    for name, config in configs.items():
        base = family_config(fam, name)
        skip = _SHAPE_KEYS[name] | _IGNORED
        diff = {
            key: _plain(value) for key, value in config.items()
            if key in base and not key.startswith("_") and key not in skip and _plain(value) != base[key]
        }
        if diff:
            overrides[name] = diff
    return {COMPONENTS_METADATA_KEY: json.dumps(overrides, sort_keys=True)} if overrides else {}


def _plain(value: object) -> object:
    """JSON-comparable form (tuples -> lists)."""
    return json.loads(json.dumps(value))
