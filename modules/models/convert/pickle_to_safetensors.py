"""``.ckpt``/``.pt`` → ``.safetensors`` without running the pickle's code, and precision/EMA conversions.

A pickle can name any Python callable to build its objects; loading it that way runs code. Here the
pickle is read by PyTorch's restricted unpickler (``torch.load(weights_only=True)``), which builds only
tensors and plain containers (dict, list, tuple, numbers, strings) and refuses any other global, naming
it; nothing it names is imported or called. The tensors of the state dict (``state_dict`` of a
Lightning checkpoint, else the top level) are written as safetensors.

``to_dtype`` writes fp16/bf16 copies; ``prune_ema`` drops the ``model_ema.*`` copies a training
checkpoint carries (or, with ``use_ema``, writes the EMA weights in place of the model's, as A1111 users
know from "pruned-emaonly" files).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Mapping

if TYPE_CHECKING:
    import torch


class ConversionError(ValueError):
    """A file that cannot be converted (or is refused); the message is for the user."""


def read_pickled_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a pickled checkpoint, read without running its code (see the module docstring)."""
    import torch

    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConversionError(f"{path.name} was refused: it holds more than tensors and plain data, and reading it "
                              f"would run code ({first[:300]}). Get a .safetensors version of this model "
                              "instead") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise ConversionError(f"{path.name} is not a readable PyTorch checkpoint ({type(exc).__name__}: "
                              f"{str(exc)[:200]})") from None
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise ConversionError(f"{path.name} holds a {type(obj).__name__}, not a state dict of tensors")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ConversionError(f"{path.name} holds no tensors")
    return tensors


def to_dtype(state: dict[str, torch.Tensor], dtype: Literal["fp16", "bf16", "fp32"]) -> dict[str, torch.Tensor]:
    import torch

    target = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[dtype]
    return {k: (v.to(target) if v.is_floating_point() else v) for k, v in state.items()}


def prune_ema(state: dict[str, torch.Tensor], *, use_ema: bool = False) -> dict[str, torch.Tensor]:
    """Drop ``model_ema.*``; with ``use_ema`` first copy the EMA weights over the model's (LDM naming:
    ``model_ema.diffusion_modelinput_blocks00weight`` is ``model.diffusion_model.input_blocks.0.0.weight``)."""
    out = {k: v for k, v in state.items() if not k.startswith("model_ema.")}
    if use_ema:
        ema = {k[len("model_ema."):]: v for k, v in state.items() if k.startswith("model_ema.")
               and k not in ("model_ema.decay", "model_ema.num_updates")}
        if not ema:
            raise ConversionError("this checkpoint has no EMA weights")
        for key in [k for k in out if k.startswith("model.")]:
            flat = key[len("model."):].replace(".", "")
            if flat in ema:
                out[key] = ema[flat]
    return out


def write_safetensors(path: Path, state: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> Path:
    from safetensors.torch import save_file

    if path.exists():
        raise ConversionError(f"{path.name} exists already: pick another name")
    partial = path.with_name(path.name + ".partial")
    # safetensors refuses tensors sharing memory: each is written as its own contiguous copy
    save_file({k: v.contiguous().clone() for k, v in state.items()}, str(partial), metadata=dict(metadata or {}))
    os.replace(partial, path)
    return path
