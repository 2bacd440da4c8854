"""Checkpoint merging (A1111's Checkpoint Merger): weighted sum, add difference and train difference,
tensor by tensor.

``weighted_sum``: ``A * (1 - M) + B * M``. ``add_difference``: ``A + (B - C) * M``. ``train_difference``
(the sd-webui-supermerger extension's "trainDifference" calculation mode of its add-difference merge):
``A + 1.8 * M * (B - C) * |B - A| / (|B - C| + |B - A|)`` element by element, with 0 where both distances
are 0. The difference B - C is scaled, weight by weight, by how far B is from A relative to how far it is
from C: where A already sits at B nothing is added; where A is far from B (compared with C) nearly the
whole difference is, as if fine-tuning A towards what B learned over C. The 1.8 factor is supermerger's.
Every tensor of A is
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

Method = Literal["weighted_sum", "add_difference", "train_difference"]

#: the recipe's ``interp_method`` for each method (A1111 names its two; the third is supermerger's)
METHOD_NAMES = {"weighted_sum": "Weighted sum", "add_difference": "Add difference",
                "train_difference": "Train difference"}
#: supermerger's scale on the train difference
TRAIN_DIFFERENCE_SCALE = 1.8


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
    if inputs.method != "weighted_sum" and inputs.tertiary is None:
        raise MergeError(f"{METHOD_NAMES[inputs.method].lower()} needs a third checkpoint (C): the difference B - C "
                         "is what is added to A")
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
                        if inputs.method == "train_difference":
                            ta = train_difference(ta, tb, tc, m)
                        else:
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


def train_difference(a: "torch.Tensor", b: "torch.Tensor", c: "torch.Tensor", m: float) -> "torch.Tensor":
    """``A + 1.8 * M * (B - C) * |B - A| / (|B - C| + |B - A|)`` (0 where both distances are 0), in A's dtype."""
    import torch

    af, bf, cf = a.float(), b.float(), c.float()
    diff = bf - cf
    to_a = (bf - af).abs()
    total = diff.abs() + to_a
    share = torch.where(total > 0, to_a / torch.where(total > 0, total, torch.ones_like(total)),
                        torch.zeros_like(total))
    return (af + diff * share * (TRAIN_DIFFERENCE_SCALE * m)).to(a.dtype)


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
              "interp_method": METHOD_NAMES[inputs.method],
              "multiplier": inputs.multiplier, "save_as_half": inputs.dtype == "fp16",
              "bake_in_vae": inputs.vae.name if inputs.vae else None}
    if inputs.method == "train_difference":
        recipe["train_difference_scale"] = TRAIN_DIFFERENCE_SCALE
    partial = path.with_name(path.name + ".partial")
    save_file(state, str(partial), metadata={"sd_merge_recipe": json.dumps(recipe), "format": "pt"})
    os.replace(partial, path)
    return path
