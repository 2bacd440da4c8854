"""Build diffusers/transformers components from an LDM/SGM single-file state dict.

Weights are converted by diffusers' own functions (``convert_ldm_unet_checkpoint``,
``convert_ldm_vae_checkpoint``, ``convert_ldm_clip_checkpoint``, ``convert_open_clip_checkpoint``).
Before that, the file's key set under the component prefix is compared with the exact set the
layout (``ldm_keys``) requires for the config, so missing and unexpected tensors are reported by name;
after it, ``load_state_dict(strict=True)`` checks names and shapes once more.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping

import torch
from torch import Tensor, nn

from modules.models.convert.ldm_keys import (
    clip_key_map, normalise_clip_key, openclip_key_map, unet_key_map, vae_key_map,
)
from modules.models.families import TextEncoderSpec

StateDict = Mapping[str, Tensor]
#: Keys that released checkpoints carry but no diffusers component uses.
VAE_IGNORED_PREFIXES = ("loss.",)
OPENCLIP_IGNORED = ("logit_scale", "attn_mask")
#: config entries that are bookkeeping, not architecture (``torch_dtype`` would build a float16 model)
NON_INIT_TE_KEYS = frozenset({"architectures", "torch_dtype", "dtype", "transformers_version", "_name_or_path"})


class ComponentError(ValueError):
    """A component cannot be built from the file's tensors (message names the component)."""


def _empty(factory: "Callable[[dict], nn.Module]", config: dict) -> nn.Module:
    """Instantiate with parameters on the meta device (weights come from the file).

    Private keys (``_diffusers_version`` of the shipped config) are dropped so that pipelines do not
    apply their legacy-config fix-ups to a freshly built model.
    """
    from accelerate import init_empty_weights

    with init_empty_weights():
        return factory({key: value for key, value in config.items() if not key.startswith("_")})


def _subset(state: StateDict, prefix: str) -> dict[str, Tensor]:
    return {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}


def _check_keys(component: str, present: Iterable[str], expected: Iterable[str], optional: Iterable[str] = ()) -> None:
    present, expected = set(present), set(expected)
    missing = sorted(expected - present)
    unexpected = sorted(present - expected - set(optional))
    if missing:
        raise ComponentError(f"{component} is missing {len(missing)} tensor(s), e.g. '{missing[0]}'")
    if unexpected:
        raise ComponentError(f"{component} has {len(unexpected)} unexpected tensor(s), e.g. '{unexpected[0]}'")


def _assign(component: str, model: nn.Module, weights: dict[str, Tensor], dtype: torch.dtype) -> nn.Module:
    """Strictly load converted weights (cast to ``dtype``) into the meta-initialised model."""
    weights = {key: value.to(dtype) if value.is_floating_point() else value for key, value in weights.items()}
    try:
        model.load_state_dict(weights, strict=True, assign=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = next((line.strip() for line in first[1:] if line.strip()), first[0] if first else "")
        raise ComponentError(f"{component} weights do not fit its config ({detail})") from exc
    return model.eval()


def build_unet(state: StateDict, prefix: str, config: dict, dtype: torch.dtype) -> nn.Module:
    """UNet2DConditionModel from ``model.diffusion_model.*`` tensors."""
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    model = _empty(UNet2DConditionModel.from_config, config)
    sub = _subset(state, prefix)
    _check_keys("UNet", sub, unet_key_map(model.state_dict(), config).values())
    converted = convert_ldm_unet_checkpoint({prefix + k: v for k, v in sub.items()}, config)
    return _assign("UNet", model, converted, dtype)


def build_vae(state: StateDict, prefix: str, config: dict, dtype: torch.dtype) -> nn.Module:
    """AutoencoderKL from ``first_stage_model.*`` (or bare) LDM VAE tensors."""
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    model = _empty(AutoencoderKL.from_config, config)
    sub = {k: v for k, v in _subset(state, prefix).items() if not k.startswith(VAE_IGNORED_PREFIXES)}
    _check_keys("VAE", sub, vae_key_map(model.state_dict(), config).values())
    return _assign("VAE", model, convert_ldm_vae_checkpoint(sub, config), dtype)


def build_text_encoder(state: StateDict, spec: TextEncoderSpec, config: dict, dtype: torch.dtype) -> nn.Module:
    """CLIPTextModel(WithProjection) from HF-CLIP or OpenCLIP tensors under ``spec.prefix``."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cls = CLIPTextModelWithProjection if spec.with_projection else CLIPTextModel
    clean = {k: v for k, v in config.items() if k not in NON_INIT_TE_KEYS}
    model = _empty(lambda values: cls(CLIPTextConfig(**values)), clean)
    wrapped = hasattr(model, "text_model")
    model_keys = [normalise_clip_key(k) for k in model.state_dict()]
    name = spec.component
    if spec.layout == "clip":
        weights = _clip_weights(state, spec, model_keys)
    else:
        weights = _openclip_weights(state, spec, model, model_keys, config["num_hidden_layers"])
    if not wrapped:
        weights = {k.removeprefix("text_model."): v for k, v in weights.items()}
    return _assign(name, model, weights, dtype)


def _clip_weights(state: StateDict, spec: TextEncoderSpec, model_keys: list[str]) -> dict[str, Tensor]:
    from diffusers.loaders.single_file_utils import convert_ldm_clip_checkpoint

    sub = {normalise_clip_key(k): v for k, v in _subset(state, spec.prefix).items()}
    sub = {k: v for k, v in sub.items() if not k.endswith("position_ids")}
    _check_keys(spec.component, sub, clip_key_map(model_keys).values())
    converted = convert_ldm_clip_checkpoint({spec.prefix + k: v for k, v in sub.items()}, spec.prefix)
    return {normalise_clip_key(k): v for k, v in converted.items()}


def _openclip_weights(
    state: StateDict, spec: TextEncoderSpec, model: nn.Module, model_keys: list[str], layers: int
) -> dict[str, Tensor]:
    from diffusers.loaders.single_file_utils import convert_open_clip_checkpoint

    sub = _subset(state, spec.prefix)
    optional = set(OPENCLIP_IGNORED)
    if spec.drop_last_layer:
        optional |= {k for k in sub if k.startswith("transformer.resblocks.") and int(k.split(".")[2]) >= layers}
        optional.add("text_projection")
    expected = {ldm for ldm, _ in openclip_key_map(model_keys).values()}
    _check_keys(spec.component, sub, expected, optional)
    kept = {spec.prefix + k: v for k, v in sub.items() if k in expected}
    converted = convert_open_clip_checkpoint(model, kept, prefix=spec.prefix)
    return {normalise_clip_key(k): v for k, v in converted.items()}
