"""LoRA files between the diffusers/PEFT layout and kohya's (the one A1111 and most tools read).

* **to kohya**: ``lora_unet_<diffusers module path with _>`` and, for the text encoders,
  ``lora_te_text_model_<...>`` (SD 1.x/2.x) or ``lora_te1_text_model_`` / ``lora_te2_text_model_`` (SDXL):
  the ``text_model.`` prefix is written even when the source came from transformers 5, which dropped it
  (A1111's key matching has no fallback for the prefix-less form); ``.lora_down`` / ``.lora_up`` /
  ``.alpha`` (alpha = rank when the source had none: scale 1.0, PEFT's default), ``ss_network_*`` metadata.
* **to PEFT**: ``unet.<module path>.lora_A.weight`` / ``.lora_B.weight`` and ``text_encoder[_2].<path>``;
  kohya's flattened names are mapped back to dotted module paths against the family's networks built on the
  meta device (no weights, no download); SDXL's SGM names (``input_blocks_4_1_...``) are recognised too.
  Alphas go into ``lora_adapter_metadata`` when uniform per component, else as ``<path>.alpha`` tensors.

Parsing is :func:`modules.generation.addons.lora_convert.parse_lora` (both layouts), so whatever the studio
applies is what is converted; LyCORIS types are refused there with a message.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any, Mapping

import torch
from torch import Tensor

from modules.generation.addons.lora_convert import COMPONENT_ATTR, LoraError, ModuleIndex, ParsedLora, parse_lora

FAMILIES = ("sd1", "sd2", "sdxl")
_FAMILY_IDS = {"sd1": "sd1", "sd2": "sd2-512", "sdxl": "sdxl"}


def guess_family(parsed: ParsedLora) -> str:
    """sdxl when it has a second text encoder or kohya says so; sd2 for 1024-wide cross-attention; else sd1."""
    version = str(parsed.metadata.get("ss_base_model_version", "")).lower()
    if any(kind == "te2" for kind, _ in parsed.modules) or version.startswith("sdxl"):
        return "sdxl"
    if version.startswith("sd_v2") or parsed.metadata.get("ss_v2") == "True":
        return "sd2"
    for (kind, name), module in parsed.modules.items():
        if kind == "unet" and name.endswith("attn2_to_k") and module.down.ndim == 2:
            return "sd2" if module.down.shape[1] == 1024 else "sd1"
    return "sd1"


def _kohya_prefix(kind: str, family: str) -> str:
    if kind == "unet":
        return "lora_unet_"
    if family == "sdxl":
        return "lora_te1_text_model_" if kind == "te" else "lora_te2_text_model_"
    return "lora_te_text_model_"


def to_kohya(parsed: ParsedLora, family: str) -> tuple[dict[str, Tensor], dict[str, str]]:
    """(state dict, metadata) in kohya's layout."""
    out: dict[str, Tensor] = {}
    for (kind, name), module in parsed.modules.items():
        key = _kohya_prefix(kind, family) + name
        out[f"{key}.lora_down.weight"] = module.down.contiguous()
        out[f"{key}.lora_up.weight"] = module.up.contiguous()
        if module.mid is not None:
            out[f"{key}.lora_mid.weight"] = module.mid.contiguous()
        rank = module.down.shape[0]
        out[f"{key}.alpha"] = torch.tensor(float(module.alpha if module.alpha is not None else rank))
    ranks = sorted({m.down.shape[0] for m in parsed.modules.values()})
    alphas = sorted({float(m.alpha if m.alpha is not None else m.down.shape[0]) for m in parsed.modules.values()})
    metadata = {k: v for k, v in parsed.metadata.items() if k != "lora_adapter_metadata"}
    metadata.update({"ss_network_module": "networks.lora", "ss_network_dim": str(ranks[-1]),
                     "ss_network_alpha": f"{alphas[-1]:g}",
                     "ss_base_model_version": {"sd1": "sd_v1", "sd2": "sd_v2", "sdxl": "sdxl_base_v1-0"}[family]})
    return out, metadata


def _meta_networks(family: str) -> Any:
    """The family's UNet and text encoders on the meta device: module names only, no memory, no weights."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from modules.models.arch.overlay import family_config
    from modules.models.families import get_family

    fam = get_family(_FAMILY_IDS[family])
    parts: dict[str, Any] = {}
    with torch.device("meta"):
        parts["unet"] = UNet2DConditionModel.from_config(family_config(fam, "unet"))
        for spec in fam.text_encoders:
            config = CLIPTextConfig.from_dict(family_config(fam, spec.component))
            model_class = CLIPTextModelWithProjection if spec.component == "text_encoder_2" else CLIPTextModel
            parts[spec.component] = model_class(config)
    return SimpleNamespace(**parts)


def to_peft(parsed: ParsedLora, family: str) -> tuple[dict[str, Tensor], dict[str, str]]:
    """(state dict, metadata) in the diffusers/PEFT layout; LoraError naming a module the family lacks."""
    index = ModuleIndex.for_pipeline(_meta_networks(family))
    out: dict[str, Tensor] = {}
    alphas: dict[str, set[float]] = {}
    ranks: dict[str, set[int]] = {}
    for key, module in parsed.modules.items():
        hit = index.resolve(key)
        if hit is None:
            raise LoraError(f"LoRA layer {key[1]!r} ({COMPONENT_ATTR[key[0]]}) is not in a {family} model: "
                            f"pick the family it was made for")
        attr, path, _ = hit
        base = f"{attr}.{path}"
        out[f"{base}.lora_A.weight"] = module.down.contiguous()
        out[f"{base}.lora_B.weight"] = module.up.contiguous()
        if module.mid is not None:
            raise LoraError("a LoCon LoRA with lora_mid tensors has no PEFT form: keep it in kohya's layout")
        rank = module.down.shape[0]
        alpha = float(module.alpha if module.alpha is not None else rank)
        out[f"{base}.alpha"] = torch.tensor(alpha)
        alphas.setdefault(attr, set()).add(alpha)
        ranks.setdefault(attr, set()).add(rank)
    metadata = {k: v for k, v in parsed.metadata.items() if not k.startswith("ss_network")}
    uniform = all(len(alphas[a]) == 1 and len(ranks[a]) == 1 for a in alphas)
    if uniform:  # the common case: no per-module tensors, the config diffusers writes
        out = {k: v for k, v in out.items() if not k.endswith(".alpha")}
        metadata["lora_adapter_metadata"] = json.dumps(
            {f"{attr}.{field}": value for attr in alphas
             for field, value in (("lora_alpha", next(iter(alphas[attr]))), ("r", next(iter(ranks[attr]))))})
    return out, metadata


def convert_lora_state(state: Mapping[str, Tensor], metadata: Mapping[str, str], *, to: str,
                       family: str = "auto", label: str = "LoRA") -> tuple[dict[str, Tensor], dict[str, str], str]:
    """(state dict, metadata, family used) of ``state`` converted ``to`` "kohya" or "peft"."""
    parsed = parse_lora(state, metadata, label=label)
    chosen = guess_family(parsed) if family == "auto" else family
    if chosen not in FAMILIES:
        raise LoraError(f"family {chosen!r}: one of auto, {', '.join(FAMILIES)}")
    if to == "kohya":
        return (*to_kohya(parsed, chosen), chosen)
    if to == "peft":
        return (*to_peft(parsed, chosen), chosen)
    raise LoraError(f"convert a LoRA to 'kohya' or 'peft', not {to!r}")
