"""Checkpoint merging (A1111's Checkpoint Merger): weighted sum and add difference, tensor by tensor.

``weighted_sum``: ``A * (1 - M) + B * M``. ``add_difference``: ``A + (B - C) * M``. Every tensor of A is
written; a key B (or C) lacks is copied from A as it is (A1111 does the same). Shapes that differ (an
inpainting model's 9-channel input against a 4-channel one) are refused, naming the tensor, as are
checkpoints of different families. A VAE can be baked in (its weights replace ``first_stage_model.*``).
The recipe goes into the file's metadata (A1111's ``sd_merge_recipe`` key), and the file is written
atomically in the checkpoint folder.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Literal

if TYPE_CHECKING:
    import torch

Method = Literal["weighted_sum", "add_difference"]


class MergeError(ValueError):
    """A merge that cannot be done; the message is for the user."""


@dataclass(frozen=True)
class MergeInputs:
    primary: Path
    secondary: Path
    tertiary: Path | None
    method: Method
    multiplier: float
    dtype: Literal["keep", "fp16", "bf16"] = "keep"
    vae: Path | None = None


def _family(path: Path) -> str:
    from modules.models.detect import detect_checkpoint

    return detect_checkpoint(path).family.id


def check_inputs(inputs: MergeInputs) -> None:
    for path in (inputs.primary, inputs.secondary, inputs.tertiary):
        if path is not None and path.suffix.lower() != ".safetensors":
            raise MergeError(f"{path.name}: only .safetensors checkpoints are merged (convert a .ckpt first)")
    if inputs.method == "add_difference" and inputs.tertiary is None:
        raise MergeError("add difference needs a third checkpoint (C): A + (B - C) x multiplier")
    families = {path.name: _family(path) for path in (inputs.primary, inputs.secondary, inputs.tertiary)
                if path is not None}
    if len(set(families.values())) > 1:
        listed = ", ".join(f"{name}: {family}" for name, family in families.items())
        raise MergeError(f"the checkpoints are of different families ({listed}): they cannot be merged")


def merge(inputs: MergeInputs, on_progress: Callable[[int, int], None] | None = None) -> dict[str, torch.Tensor]:
    """The merged state dict (see the module docstring)."""
    import torch
    from safetensors import safe_open

    check_inputs(inputs)
    out: dict[str, torch.Tensor] = {}
    m = float(inputs.multiplier)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(inputs.dtype)
    with safe_open(str(inputs.primary), "pt") as a, safe_open(str(inputs.secondary), "pt") as b:
        c = safe_open(str(inputs.tertiary), "pt") if inputs.tertiary is not None else None
        try:
            b_keys, c_keys = set(b.keys()), set(c.keys()) if c is not None else set()
            keys = list(a.keys())
            for index, key in enumerate(keys):
                ta = a.get_tensor(key)
                if key in b_keys and ta.is_floating_point():
                    tb = b.get_tensor(key)
                    if tb.shape != ta.shape:
                        raise MergeError(f"tensor {key} has shape {tuple(ta.shape)} in {inputs.primary.name} but "
                                         f"{tuple(tb.shape)} in {inputs.secondary.name}: not the same kind of model")
                    if inputs.method == "weighted_sum":
                        ta = (ta.float() * (1 - m) + tb.float() * m).to(ta.dtype)
                    elif key in c_keys and c is not None:
                        tc = c.get_tensor(key)
                        if tc.shape != ta.shape:
                            raise MergeError(f"tensor {key} has another shape in {inputs.tertiary.name}")  # type: ignore[union-attr]
                        ta = (ta.float() + (tb.float() - tc.float()) * m).to(ta.dtype)
                if dtype is not None and ta.is_floating_point():
                    ta = ta.to(dtype)
                out[key] = ta.contiguous()
                if on_progress is not None:
                    on_progress(index + 1, len(keys))
        finally:
            if c is not None:
                c.__exit__(None, None, None)
    if inputs.vae is not None:
        bake_vae(out, inputs.vae)
    return out


def bake_vae(state: dict[str, torch.Tensor], vae: Path) -> None:
    """Replace ``first_stage_model.*`` with a VAE file's weights (A1111 VAE files hold LDM VAE keys)."""
    from safetensors.torch import load_file

    weights = load_file(str(vae))
    replaced = 0
    for key, tensor in weights.items():
        name = key if key.startswith("first_stage_model.") else f"first_stage_model.{key}"
        if name in state:
            if state[name].shape != tensor.shape:
                raise MergeError(f"the VAE {vae.name} does not fit this model ({key})")
            state[name] = tensor.to(state[name].dtype)
            replaced += 1
    if not replaced:
        raise MergeError(f"the VAE {vae.name} has no weights this checkpoint's VAE uses")


def save_merged(path: Path, state: dict[str, torch.Tensor], inputs: MergeInputs) -> Path:
    from safetensors.torch import save_file

    recipe = {"type": "webui", "primary_model": inputs.primary.name, "secondary_model": inputs.secondary.name,
              "tertiary_model": inputs.tertiary.name if inputs.tertiary else None,
              "interp_method": {"weighted_sum": "Weighted sum", "add_difference": "Add difference"}[inputs.method],
              "multiplier": inputs.multiplier, "save_as_half": inputs.dtype == "fp16",
              "bake_in_vae": inputs.vae.name if inputs.vae else None}
    partial = path.with_name(path.name + ".partial")
    save_file(state, str(partial), metadata={"sd_merge_recipe": json.dumps(recipe), "format": "pt"})
    os.replace(partial, path)
    return path
