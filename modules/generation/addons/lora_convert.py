"""LoRA files -> per-module low-rank weights, and module names -> the modules of a loaded pipeline.

Formats read (the ones A1111's built-in Lora extension calls "LoRA"):

* **kohya** (``networks/lora.py``): ``lora_unet_<module path with _>``, ``lora_te_*`` (SD 1.x/2.x text
  encoder), ``lora_te1_*`` / ``lora_te2_*`` (SDXL), tensors ``.lora_down.weight``, ``.lora_up.weight``,
  optional ``.alpha`` and (LoCon, 3x3 convs) ``.lora_mid.weight``. SD 1.x UNet names are diffusers paths,
  SDXL names are usually SGM/LDM paths (``input_blocks_4_1_transformer_blocks_0_attn1_to_k``); both are
  recognised for every family.
* **diffusers / PEFT**: ``unet.<path>.lora_A.weight`` / ``.lora_B.weight`` (also the older
  ``.lora.down/.lora.up`` and ``.lora_linear_layer.down/.up``), ``text_encoder.*``, ``text_encoder_2.*``;
  an optional ``<path>.alpha`` tensor or the safetensors ``lora_adapter_metadata`` (``lora_alpha``, ``r``)
  gives the scale, else alpha = rank (scale 1.0, PEFT's diffusers default).

Text-encoder names are matched with or without the ``text_model.`` prefix (transformers 5 removed it from
``CLIPTextModel``; A1111 and kohya files have it). The scale of a module is ``alpha / rank`` (1.0 without
alpha), as A1111's ``calc_scale``. LyCORIS variants (LoHa ``hada_*``, LoKr ``lokr_*``, OFT, DoRA
``dora_scale``), ``diff`` and bias patches are refused with a message naming them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

import torch
from torch import Tensor, nn

from modules.generation.validation import InvalidRequestError


class LoraError(InvalidRequestError):
    """A LoRA that cannot be used (message for the user)."""


#: tensor-name suffix -> role, longest first
_SUFFIXES: tuple[tuple[str, str], ...] = (
    (".lora_linear_layer.down.weight", "down"), (".lora_linear_layer.up.weight", "up"),
    (".lora_down.weight", "down"), (".lora_up.weight", "up"), (".lora_mid.weight", "mid"),
    (".lora_A.weight", "down"), (".lora_B.weight", "up"),
    (".lora.down.weight", "down"), (".lora.up.weight", "up"),
    (".alpha", "alpha"),
)
#: markers of network types this loader does not implement
_UNSUPPORTED = (("hada_", "LoHa"), ("lokr_", "LoKr"), ("oft_", "OFT"), ("dora_scale", "DoRA"),
                ("lora_magnitude_vector", "DoRA"), (".diff", "full-weight diff"), (".diff_b", "bias diff"),
                ("processor.", "attention-processor LoRA (pre-0.14 diffusers)"))
#: name prefix -> component kind ("unet", "te" = first text encoder, "te2" = second)
_PREFIXES: tuple[tuple[str, str], ...] = (
    ("lora_unet_", "unet"), ("lora_te1_", "te"), ("lora_te2_", "te2"), ("lora_te_", "te"),
    ("unet.", "unet"), ("text_encoder_2.", "te2"), ("text_encoder.", "te"),
)
COMPONENT_ATTR: Mapping[str, str] = {"unet": "unet", "te": "text_encoder", "te2": "text_encoder_2"}


@dataclass(frozen=True)
class LoraModule:
    """The low-rank factors of one target module."""

    down: Tensor
    up: Tensor
    alpha: float | None = None
    mid: Tensor | None = None

    @property
    def rank(self) -> int:
        return int(self.down.shape[0])

    @property
    def scale(self) -> float:
        """A1111 ``calc_scale``: alpha / rank, 1.0 without alpha."""
        return 1.0 if self.alpha is None else float(self.alpha) / self.rank

    def delta(self, shape: torch.Size, device: torch.device, dyn_dim: int | None = None) -> Tensor:
        """The full weight update ``up @ down * scale`` (float32) shaped like the target weight."""
        down = self.down.to(device=device, dtype=torch.float32)
        up = self.up.to(device=device, dtype=torch.float32)
        if dyn_dim is not None and 0 < dyn_dim < down.shape[0]:
            down, up = down[:dyn_dim], up[:, :dyn_dim]
        if self.mid is not None:  # LoCon/Tucker: mid (rank, rank, kh, kw)
            mid = self.mid.to(device=device, dtype=torch.float32)
            update = torch.einsum("n m k l, i n, m j -> i j k l", mid, up.flatten(1), down.flatten(1))
        elif down.dim() == 4 and down.shape[2:] != (1, 1):  # 3x3 conv LoRA: down is the conv, up is 1x1
            update = torch.einsum("o r, r i h w -> o i h w", up.flatten(1), down)
        else:
            update = up.flatten(1) @ down.flatten(1)
        if update.numel() != torch.Size(shape).numel():
            raise ValueError(f"LoRA update has {tuple(update.shape)} values, the layer weight is {tuple(shape)}")
        return update.reshape(shape) * self.scale


@dataclass(frozen=True)
class ParsedLora:
    """A LoRA file as modules keyed by (component kind, normalised module name)."""

    modules: Mapping[tuple[str, str], LoraModule]
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def alias(self) -> str | None:
        """The name kohya wrote into the file (A1111's alias), if any."""
        value = self.metadata.get("ss_output_name")
        return (value.strip() or None) if isinstance(value, str) else None


def normalise_name(name: str) -> str:
    """Module path in the form used for matching: dots as underscores, no ``text_model_`` prefix."""
    flat = name.replace(".", "_")
    return flat[len("text_model_"):] if flat.startswith("text_model_") else flat


def _split(key: str) -> tuple[str, str] | None:
    for suffix, role in _SUFFIXES:
        if key.endswith(suffix):
            return key[: -len(suffix)], role
    return None


def _component(module_key: str) -> tuple[str, str] | None:
    for prefix, kind in _PREFIXES:
        if module_key.startswith(prefix):
            return kind, normalise_name(module_key[len(prefix):])
    return None


def _peft_alphas(metadata: Mapping[str, str]) -> dict[str, float]:
    """Per-component ``lora_alpha`` from diffusers' ``lora_adapter_metadata`` (kind -> alpha)."""
    raw = metadata.get("lora_adapter_metadata")
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except (TypeError, ValueError):
        return {}
    alphas: dict[str, float] = {}
    if isinstance(data, dict):
        for prefix, kind in (("unet.", "unet"), ("text_encoder.", "te"), ("text_encoder_2.", "te2")):
            value = data.get(f"{prefix}lora_alpha")
            if isinstance(value, (int, float)):
                alphas[kind] = float(value)
    return alphas


def parse_lora(state: Mapping[str, Tensor], metadata: Mapping[str, str] | None = None,
               *, label: str = "LoRA") -> ParsedLora:
    """Group a LoRA state dict into modules; LoraError for unsupported network types or no LoRA tensors."""
    metadata = dict(metadata or {})
    for key in state:
        for marker, kind in _UNSUPPORTED:
            if marker in key:
                raise LoraError(f"{label} is a {kind} network ('{key}'); only LoRA/LoCon networks are supported")
    parts: dict[tuple[str, str], dict[str, Tensor]] = {}
    foreign: list[str] = []
    for key, value in state.items():
        split = _split(key)
        if split is None:
            continue
        target = _component(split[0])
        if target is None:
            foreign.append(key)
            continue
        parts.setdefault(target, {})[split[1]] = value
    peft_alpha = _peft_alphas(metadata)
    modules: dict[tuple[str, str], LoraModule] = {}
    for target, tensors in parts.items():
        if "down" not in tensors or "up" not in tensors:
            continue
        alpha_tensor = tensors.get("alpha")
        alpha = float(alpha_tensor.item()) if alpha_tensor is not None else peft_alpha.get(target[0])
        modules[target] = LoraModule(down=tensors["down"], up=tensors["up"], alpha=alpha, mid=tensors.get("mid"))
    if not modules and foreign:
        raise LoraError(f"{label} targets layers of another architecture (e.g. '{foreign[0]}'); only SD 1.x, "
                        f"SD 2.x and SDXL LoRAs (UNet and CLIP text encoders) are supported")
    if not modules:
        raise LoraError(f"{label} holds no LoRA weights (no lora_down/lora_up or lora_A/lora_B tensors)")
    return ParsedLora(modules=modules, metadata=metadata)


# --------------------------------------------------------------------------- module index


def _weighted_modules(root: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    for name, module in root.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)) and name:
            yield name, module


def _ldm_aliases(unet: nn.Module, names: list[str]) -> dict[str, str]:
    """diffusers module path -> LDM/SGM path (``input_blocks.4.1...``), when the UNet has an LDM layout."""
    from modules.models.convert.ldm_keys import LayoutError, unet_key_map

    config = getattr(unet, "config", None)
    if config is None:
        return {}
    try:
        mapping = unet_key_map([f"{name}.weight" for name in names], dict(config))
    except (LayoutError, KeyError, TypeError):
        return {}
    return {key[: -len(".weight")]: value[: -len(".weight")] for key, value in mapping.items()
            if value.endswith(".weight")}


@dataclass(frozen=True)
class ModuleIndex:
    """Normalised name -> (component attribute, module path, module) over a pipeline's LoRA targets."""

    entries: Mapping[tuple[str, str], tuple[str, str, nn.Module]]

    @classmethod
    def for_pipeline(cls, pipe: Any) -> "ModuleIndex":
        entries: dict[tuple[str, str], tuple[str, str, nn.Module]] = {}
        for kind, attr in COMPONENT_ATTR.items():
            root = getattr(pipe, attr, None)
            if not isinstance(root, nn.Module):
                continue
            found = list(_weighted_modules(root))
            for name, module in found:
                entries[(kind, normalise_name(name))] = (attr, name, module)
            if kind == "unet":
                by_name = dict(found)
                for name, ldm in _ldm_aliases(root, list(by_name)).items():
                    entries.setdefault((kind, normalise_name(ldm)), (attr, name, by_name[name]))
        return cls(entries)

    def resolve(self, key: tuple[str, str]) -> tuple[str, str, nn.Module] | None:
        hit = self.entries.get(key)
        if hit is None and key[0] == "unet" and key[1].startswith("diffusion_model_"):
            hit = self.entries.get(("unet", key[1][len("diffusion_model_"):]))
        return hit
