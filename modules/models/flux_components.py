"""Build one FLUX.1 pipeline component (transformer, VAE, CLIP-L, T5) from a :class:`ComponentSource`.

Config = shipped family config <- dimensions read from the header shapes <- the component's
``atelier.components`` metadata. Shapes are read by converting the header to the target layout on
the ``meta`` device, so the same conversion code decides the config and later loads the weights.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

from modules.models import flux_configs as configs
from modules.models.errors import ModelLoadError
from modules.models.families import ModelFamily
from modules.models.flux_source import ComponentSource

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class _Kind:
    """How one component is converted, configured, checked and instantiated."""

    convert: Callable[[Mapping[str, Any]], dict[str, Any]]
    infer: Callable[[Mapping[str, tuple[int, ...]], ComponentSource], dict[str, Any]]
    check: Callable[[Mapping[str, Any], ComponentSource], None]
    build: Callable[[dict[str, Any]], "torch.nn.Module"]


def _convert_transformer(state: Mapping[str, Any]) -> dict[str, Any]:
    from modules.models.convert import bfl

    stripped = bfl.transformer_keys(state)
    return dict(stripped) if bfl.DIFFUSERS_MARKER in stripped else bfl.transformer_to_diffusers(stripped)


def _build_transformer(config: dict[str, Any]) -> "torch.nn.Module":
    from diffusers import FluxTransformer2DModel

    return FluxTransformer2DModel.from_config(config)


def _build_vae(config: dict[str, Any]) -> "torch.nn.Module":
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_config(config)


def _build_clip(config: dict[str, Any]) -> "torch.nn.Module":
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig.from_dict(config))


def _build_t5(config: dict[str, Any]) -> "torch.nn.Module":
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config.from_dict(config))


def _kind(component: str) -> _Kind:
    from modules.models.convert import bfl

    return {
        "transformer": _Kind(_convert_transformer, configs.transformer_config, configs.check_transformer,
                             _build_transformer),
        "vae": _Kind(bfl.vae_to_diffusers, configs.vae_config, configs.check_vae, _build_vae),
        "text_encoder": _Kind(bfl.clip_to_transformers, configs.clip_config, configs.check_clip, _build_clip),
        "text_encoder_2": _Kind(bfl.t5_to_transformers, configs.t5_config, configs.check_nothing, _build_t5),
    }[component]


def _meta_tensors(source: ComponentSource) -> dict[str, "torch.Tensor"]:
    import torch

    return {k: torch.empty(source.header.tensors[k].shape, device="meta") for k in source.keys}


def component_config(source: ComponentSource, family: ModelFamily) -> dict[str, Any]:
    """Shipped config <- header-shape dimensions <- ``atelier.components`` overrides (checked)."""
    kind = _kind(source.component)
    shipped = json.loads((family.config_path / source.component / "config.json").read_text(encoding="utf-8"))
    try:
        converted = kind.convert(_meta_tensors(source))
    except (ValueError, KeyError) as exc:
        raise ModelLoadError(source.path, f"{source.component} layout not understood ({exc})") from exc
    shapes = {k: tuple(v.shape) for k, v in converted.items()}
    config = {**shipped, **kind.infer(shapes, source), **source.overrides}
    kind.check(config, source)
    return config


def build_component(source: ComponentSource, config: dict[str, Any], dtype: "torch.dtype",
                    device: str) -> "torch.nn.Module":
    """Instantiate ``source.component`` from ``config`` and load its weights strictly."""
    from accelerate import init_empty_weights
    from safetensors import SafetensorError, safe_open

    kind = _kind(source.component)
    with init_empty_weights():
        module = kind.build(config)
    try:
        with safe_open(str(source.path), framework="pt", device="cpu") as handle:
            raw = {k: handle.get_tensor(k) for k in source.keys}
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise ModelLoadError(source.path, f"cannot read {source.component} weights ({exc})") from exc
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in kind.convert(raw).items()}
    try:
        module.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        lines = str(exc).strip().splitlines()
        reason = " ".join(line.strip() for line in lines[:3])[:300]
        raise ModelLoadError(source.path, f"{source.component} weights do not fit its config: {reason}") from exc
    return module.to(device).eval().requires_grad_(False)
