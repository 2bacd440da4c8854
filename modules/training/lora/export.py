"""The trained adapter as a kohya LoRA file: the keys A1111 loads and ``<lora:name:w>`` loads here.

PEFT names a UNet adapter ``<module path>.lora_A.weight`` / ``.lora_B.weight``; kohya (and A1111's Lora
extension) expects ``lora_unet_<module path with "_">.lora_down.weight`` / ``.lora_up.weight`` and an
``.alpha`` scalar per module. SD 1.x/2.x module paths are diffusers' (``down_blocks_0_attentions_0_...``),
which A1111 maps to its own layers, as it does for kohya's own SD 1.x/2.x LoRAs; SDXL paths are SGM's
(``input_blocks_4_1_transformer_blocks_0_attn1_to_k``), kohya's SDXL convention, which A1111 finds as
``diffusion_model_*`` (:func:`sgm_unet_names`). Text-encoder adapters are ``lora_te_*`` (SD 1.x/2.x) or
``lora_te1_*`` / ``lora_te2_*`` (SDXL), always with the ``text_model_`` prefix that A1111 matches, even
where transformers 5 names the modules without it (:func:`text_module_name`). The training recipe goes
into the file's metadata (kohya's ``ss_*`` keys and Atelier's ``atelier_recipe``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

LORA_A, LORA_B = ".lora_A.weight", ".lora_B.weight"
#: kohya's text-encoder prefixes: one encoder (SD 1.x/2.x), or SDXL's two
TE_PREFIX = {"text_encoder": "lora_te_"}
SDXL_TE_PREFIX = {"text_encoder": "lora_te1_", "text_encoder_2": "lora_te2_"}


def text_module_name(path: str) -> str:
    """A CLIP text encoder's module path as A1111 and kohya name it: always under ``text_model.``."""
    return "text_model." + (path[len("text_model."):] if path.startswith("text_model.") else path)


def sgm_unet_names(unet: Any) -> Callable[[str], str]:
    """diffusers module path -> SGM path (``input_blocks.4.1...``) of an SDXL UNet, from its config."""
    from modules.models.convert.ldm_keys import unet_key_map

    config = dict(unet.config)

    def rename(path: str) -> str:
        mapped = unet_key_map([f"{path}.weight"], config)[f"{path}.weight"]
        return mapped[: -len(".weight")]

    return rename


def kohya_state_dict(peft_state: Mapping[str, torch.Tensor], alpha: float, prefix: str = "lora_unet_",
                     rename: Callable[[str], str] | None = None) -> dict[str, torch.Tensor]:
    """kohya tensors of one component's PEFT adapter; ``rename`` maps a module path to the one written."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in peft_state.items():
        if key.endswith(LORA_A):
            module, kind = key[: -len(LORA_A)], "lora_down.weight"
        elif key.endswith(LORA_B):
            module, kind = key[: -len(LORA_B)], "lora_up.weight"
        else:
            continue
        if rename is not None:
            module = rename(module)
        name = prefix + module.replace(".", "_")
        out[f"{name}.{kind}"] = tensor.detach().to("cpu", torch.float32).contiguous()
        out.setdefault(f"{name}.alpha", torch.tensor(float(alpha)))
    return out


def write_lora(path: Path, peft_state: Mapping[str, torch.Tensor], *, alpha: float, rank: int,
               metadata: Mapping[str, Any], text_encoders: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
               unet_names: Callable[[str], str] | None = None) -> Path:
    """Write the kohya ``.safetensors`` atomically; returns its path.

    ``peft_state``: the UNet's adapter; ``text_encoders``: kohya prefix (``lora_te_``, ``lora_te1_``,
    ``lora_te2_``) -> that encoder's adapter; ``unet_names``: the UNet's module names as written
    (:func:`sgm_unet_names` for SDXL; diffusers' paths when None)."""
    from safetensors.torch import save_file

    state = kohya_state_dict(peft_state, alpha, rename=unet_names)
    for prefix, te_state in (text_encoders or {}).items():
        state.update(kohya_state_dict(te_state, alpha, prefix, rename=text_module_name))
    if not state:
        raise ValueError("the adapter has no LoRA weights to export")
    meta = {"ss_network_module": "networks.lora", "ss_network_dim": str(rank), "ss_network_alpha": str(alpha),
            **{k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    save_file(state, str(partial), metadata=meta)
    os.replace(partial, path)
    return path


def base_model_version(pipe: Any, family_id: str) -> str:
    """kohya's ``ss_base_model_version`` of the trained model."""
    from modules.training.lora.conditioning import is_sdxl

    if is_sdxl(pipe):
        return "sdxl_base_v1-0"
    return "sd_v2" if family_id.startswith("sd2") else "sd_v1"


def export_lora(path: Path, pipe: Any, req: Any, *, family_id: str, metadata: Mapping[str, Any]) -> Path:
    """The trained ``pipe``'s adapters (UNet, and text encoders when trained) as a kohya file for ``req``
    (a :class:`~modules.training.lora.request.TrainLoraRequest`), with its recipe in the metadata."""
    from modules.training.lora.conditioning import is_sdxl
    from modules.training.lora.trainer import adapter_state, text_adapter_states

    sdxl = is_sdxl(pipe)
    prefixes = SDXL_TE_PREFIX if sdxl else TE_PREFIX
    text = {prefixes[attr]: state for attr, state in text_adapter_states(pipe).items()} if req.train_text_encoder else {}
    meta = {"ss_output_name": req.name, "ss_steps": str(req.steps), "ss_max_train_steps": str(req.steps),
            "ss_learning_rate": str(req.learning_rate), "ss_unet_lr": str(req.learning_rate),
            "ss_text_encoder_lr": str(req.text_encoder_lr or req.learning_rate) if req.train_text_encoder else "0",
            "ss_network_train_unet_only": str(not req.train_text_encoder), "ss_seed": str(req.seed),
            "ss_base_model_version": base_model_version(pipe, family_id), **metadata,
            "atelier_recipe": req.model_dump(mode="json")}
    return write_lora(path, adapter_state(pipe.unet), alpha=req.alpha, rank=req.rank, metadata=meta,
                      text_encoders=text, unet_names=sgm_unet_names(pipe.unet) if sdxl else None)
