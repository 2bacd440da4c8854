"""The trained adapter as a kohya LoRA file: the keys A1111 loads and ``<lora:name:w>`` loads here.

PEFT names a UNet adapter ``<module path>.lora_A.weight`` / ``.lora_B.weight``; kohya (and A1111's Lora
extension) expects ``lora_unet_<module path with "_">.lora_down.weight`` / ``.lora_up.weight`` and an
``.alpha`` scalar per module. The module paths are diffusers' (``down_blocks_0_attentions_0_...``), which
A1111 maps to its own layers, as it does for kohya's own SD 1.x/2.x LoRAs. The training recipe goes into
the file's metadata (kohya's ``ss_*`` keys and Atelier's ``atelier_recipe``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch

LORA_A, LORA_B = ".lora_A.weight", ".lora_B.weight"


def kohya_state_dict(peft_state: Mapping[str, torch.Tensor], alpha: float, prefix: str = "lora_unet_"
                     ) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, tensor in peft_state.items():
        if key.endswith(LORA_A):
            module, kind = key[: -len(LORA_A)], "lora_down.weight"
        elif key.endswith(LORA_B):
            module, kind = key[: -len(LORA_B)], "lora_up.weight"
        else:
            continue
        name = prefix + module.replace(".", "_")
        out[f"{name}.{kind}"] = tensor.detach().to("cpu", torch.float32).contiguous()
        out.setdefault(f"{name}.alpha", torch.tensor(float(alpha)))
    return out


def write_lora(path: Path, peft_state: Mapping[str, torch.Tensor], *, alpha: float, rank: int,
               metadata: Mapping[str, Any]) -> Path:
    """Write the kohya ``.safetensors`` atomically; returns its path."""
    from safetensors.torch import save_file

    state = kohya_state_dict(peft_state, alpha)
    if not state:
        raise ValueError("the adapter has no LoRA weights to export")
    meta = {"ss_network_module": "networks.lora", "ss_network_dim": str(rank), "ss_network_alpha": str(alpha),
            **{k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    save_file(state, str(partial), metadata=meta)
    os.replace(partial, path)
    return path
