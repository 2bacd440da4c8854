"""FLUX.1 key layouts: Black Forest Labs / ComfyUI files <-> diffusers and transformers modules.

Covers the four weight sets a FLUX.1 pipeline needs:

* transformer: BFL ``double_blocks.N.img_attn.qkv.weight`` ... (optionally prefixed
  ``model.diffusion_model.``) <-> diffusers ``FluxTransformer2DModel``. diffusers'
  ``convert_flux_transformer_checkpoint_to_diffusers`` hard-codes the FLUX.1 width (3072), so
  the same renames are written here for any width (tests prove both agree on FLUX.1 shapes);
* VAE: LDM ``encoder.down.N.block.M`` (BFL ``ae.safetensors``, ``vae.``-prefixed in ComfyUI
  all-in-one files) -> diffusers via diffusers' own ``convert_ldm_vae_checkpoint``; the reverse
  direction is written here for fixtures and export;
* CLIP-L: on-disk ``text_model.*`` (optionally ``text_encoders.clip_l.transformer.``) <-> the
  prefix-less transformers 5 ``CLIPTextModel``;
* T5-XXL encoder: on-disk ``encoder.*`` / ``shared.weight`` (optionally
  ``text_encoders.t5xxl.transformer.``) <-> ``T5EncoderModel``.

Every function is pure: it takes a mapping of tensors and returns a new dict. Tensors may live
on the ``meta`` device, so configs can be inferred from a header without reading weights.
"""

from __future__ import annotations

import re
from typing import Mapping, TypeVar

import torch
from diffusers.loaders.single_file_utils import (
    convert_ldm_clip_checkpoint,
    convert_ldm_vae_checkpoint,
    convert_sd3_t5_checkpoint_to_diffusers,
)

T = TypeVar("T")

TRANSFORMER_PREFIX = "model.diffusion_model."
CLIP_L_PREFIX = "text_encoders.clip_l.transformer."
T5XXL_PREFIX = "text_encoders.t5xxl.transformer."
VAE_PREFIXES = ("vae.", "first_stage_model.")
ALL_IN_ONE_VAE_PREFIX = "vae."

# Keys whose presence identifies each layout (after the prefix, where one applies).
BFL_MARKER = "double_blocks.0.img_attn.qkv.weight"
DIFFUSERS_MARKER = "transformer_blocks.0.attn.to_q.weight"
GUIDANCE_MARKER = "guidance_in.in_layer.weight"
DIFFUSERS_GUIDANCE_MARKER = "time_text_embed.guidance_embedder.linear_1.weight"

_TOP_LEVEL = {
    "time_in.in_layer.": "time_text_embed.timestep_embedder.linear_1.",
    "time_in.out_layer.": "time_text_embed.timestep_embedder.linear_2.",
    "vector_in.in_layer.": "time_text_embed.text_embedder.linear_1.",
    "vector_in.out_layer.": "time_text_embed.text_embedder.linear_2.",
    "guidance_in.in_layer.": "time_text_embed.guidance_embedder.linear_1.",
    "guidance_in.out_layer.": "time_text_embed.guidance_embedder.linear_2.",
    "txt_in.": "context_embedder.",
    "img_in.": "x_embedder.",
    "final_layer.linear.": "proj_out.",
}
_FINAL_MOD = ("final_layer.adaLN_modulation.1.", "norm_out.linear.")  # shift/scale order swapped
_DOUBLE = {
    "img_mod.lin.": "norm1.linear.",
    "txt_mod.lin.": "norm1_context.linear.",
    "img_attn.norm.query_norm.scale": "attn.norm_q.weight",
    "img_attn.norm.key_norm.scale": "attn.norm_k.weight",
    "txt_attn.norm.query_norm.scale": "attn.norm_added_q.weight",
    "txt_attn.norm.key_norm.scale": "attn.norm_added_k.weight",
    "img_mlp.0.": "ff.net.0.proj.",
    "img_mlp.2.": "ff.net.2.",
    "txt_mlp.0.": "ff_context.net.0.proj.",
    "txt_mlp.2.": "ff_context.net.2.",
    "img_attn.proj.": "attn.to_out.0.",
    "txt_attn.proj.": "attn.to_add_out.",
}
_DOUBLE_FUSED = {
    "img_attn.qkv.": ("attn.to_q.", "attn.to_k.", "attn.to_v."),
    "txt_attn.qkv.": ("attn.add_q_proj.", "attn.add_k_proj.", "attn.add_v_proj."),
}
_SINGLE = {
    "modulation.lin.": "norm.linear.",
    "norm.query_norm.scale": "attn.norm_q.weight",
    "norm.key_norm.scale": "attn.norm_k.weight",
    "linear2.": "proj_out.",
}
_SINGLE_FUSED = {"linear1.": ("attn.to_q.", "attn.to_k.", "attn.to_v.", "proj_mlp.")}

_BLOCK_KEY = re.compile(r"^(double_blocks|single_blocks)\.(\d+)\.(.+)$")
_DIFFUSERS_BLOCK_KEY = re.compile(r"^(transformer_blocks|single_transformer_blocks)\.(\d+)\.(.+)$")


def strip_prefix(state: Mapping[str, T], prefix: str) -> dict[str, T]:
    """The entries under ``prefix``, with the prefix removed."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def add_prefix(state: Mapping[str, T], prefix: str) -> dict[str, T]:
    return {prefix + k: v for k, v in state.items()}


_OTHER_COMPONENT_PREFIXES = ("text_encoders.", "cond_stage_model.", "conditioner.") + VAE_PREFIXES


def transformer_keys(state: Mapping[str, T]) -> dict[str, T]:
    """The FLUX transformer part of a BFL, ComfyUI or all-in-one file, prefix removed."""
    if any(k.startswith(TRANSFORMER_PREFIX) for k in state):
        return strip_prefix(state, TRANSFORMER_PREFIX)
    return {k: v for k, v in state.items() if not k.startswith(_OTHER_COMPONENT_PREFIXES)}


def _swap_halves(t: torch.Tensor) -> torch.Tensor:
    first, second = t.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


def _rename(name: str, table: Mapping[str, str]) -> str | None:
    for old, new in table.items():
        if name.startswith(old):
            return new + name[len(old):]
    return None


def _fused_parts(key: str, value: torch.Tensor, double: bool, inner: int) -> tuple[torch.Tensor, ...]:
    """Split a fused projection: q/k/v thirds (double blocks) or q, k, v + MLP rows (single blocks)."""
    if double:
        return value.chunk(3, dim=0)
    mlp = value.shape[0] - 3 * inner
    if mlp <= 0:
        raise ValueError(f"{key!r} has {value.shape[0]} rows, fewer than 3 x width {inner}")
    return torch.split(value, [inner, inner, inner, mlp], dim=0)


def transformer_to_diffusers(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """BFL transformer weights (prefix already removed) -> ``FluxTransformer2DModel`` keys.

    The width comes from ``img_in``; raises ``ValueError`` naming the first key that is not FLUX.1.
    """
    inner = state["img_in.weight"].shape[0]
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        match = _BLOCK_KEY.match(key)
        if match is None:
            if key.startswith(_FINAL_MOD[0]):
                out[_FINAL_MOD[1] + key[len(_FINAL_MOD[0]):]] = _swap_halves(value)
            elif (new := _rename(key, _TOP_LEVEL)) is not None:
                out[new] = value
            else:
                raise ValueError(f"unexpected transformer key {key!r}")
            continue
        kind, index, rest = match.groups()
        double = kind == "double_blocks"
        base = f"transformer_blocks.{index}." if double else f"single_transformer_blocks.{index}."
        if (new := _rename(rest, _DOUBLE if double else _SINGLE)) is not None:
            out[base + new] = value
            continue
        fused = _DOUBLE_FUSED if double else _SINGLE_FUSED
        old = next((f for f in fused if rest.startswith(f)), None)
        if old is None:
            raise ValueError(f"unexpected transformer key {key!r}")
        for target, part in zip(fused[old], _fused_parts(key, value, double, inner)):
            out[base + target + rest[len(old):]] = part
    return out


def transformer_to_bfl(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``FluxTransformer2DModel`` keys -> BFL layout (no prefix), for fixtures and export."""
    reverse_top = {v: k for k, v in _TOP_LEVEL.items()}
    reverse = {True: {v: k for k, v in _DOUBLE.items()}, False: {v: k for k, v in _SINGLE.items()}}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        match = _DIFFUSERS_BLOCK_KEY.match(key)
        if match is None:
            if key.startswith(_FINAL_MOD[1]):
                out[_FINAL_MOD[0] + key[len(_FINAL_MOD[1]):]] = _swap_halves(value)
            elif (new := _rename(key, reverse_top)) is not None:
                out[new] = value
            else:
                raise ValueError(f"unexpected diffusers transformer key {key!r}")
            continue
        kind, index, rest = match.groups()
        double = kind == "transformer_blocks"
        base = f"double_blocks.{index}." if double else f"single_blocks.{index}."
        if (new := _rename(rest, reverse[double])) is not None:
            out[base + new] = value
            continue
        fused = _DOUBLE_FUSED if double else _SINGLE_FUSED
        group = next(((old, targets) for old, targets in fused.items()
                      if any(rest.startswith(t) for t in targets)), None)
        if group is None:
            raise ValueError(f"unexpected diffusers transformer key {key!r}")
        old, targets = group
        if rest.startswith(targets[0]):  # the fused tensor is written once, at its first part
            suffix = rest[len(targets[0]):]
            block = key[: len(key) - len(rest)]
            out[base + old + suffix] = torch.cat([state[block + t + suffix] for t in targets], dim=0)
    return out


def vae_block_count(state: Mapping[str, object]) -> int:
    """How many encoder down blocks an LDM-layout VAE has (prefix already removed)."""
    found = {int(m.group(1)) for k in state if (m := re.match(r"encoder\.down\.(\d+)\.", k))}
    return max(found) + 1 if found else 0


def is_diffusers_vae(state: Mapping[str, object]) -> bool:
    return any(k.startswith("encoder.down_blocks.") for k in state)


def vae_to_diffusers(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """LDM VAE (bare, ``vae.`` or ``first_stage_model.``) -> ``AutoencoderKL`` keys (diffusers' own code)."""
    if is_diffusers_vae(state):
        return dict(state)
    bare = state
    for prefix in VAE_PREFIXES:
        if any(k.startswith(prefix) for k in state):
            bare = strip_prefix(state, prefix)
            break
    blocks = vae_block_count(bare)
    config = {"down_block_types": ["DownEncoderBlock2D"] * blocks, "up_block_types": ["UpDecoderBlock2D"] * blocks}
    return convert_ldm_vae_checkpoint(dict(bare), config)


_VAE_ATTN = {"group_norm.": "norm.", "to_q.": "q.", "to_k.": "k.", "to_v.": "v.", "to_out.0.": "proj_out."}


def vae_to_ldm(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``AutoencoderKL`` keys -> LDM layout (as in BFL ``ae.safetensors``), for fixtures and export."""
    ups = {int(m.group(1)) for k in state if (m := re.match(r"decoder\.up_blocks\.(\d+)\.", k))}
    last_up = max(ups) if ups else 0
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new = key.replace("conv_norm_out.", "norm_out.").replace("conv_shortcut.", "nin_shortcut.")
        new = re.sub(r"down_blocks\.(\d+)\.resnets\.", r"down.\1.block.", new)
        new = re.sub(r"down_blocks\.(\d+)\.downsamplers\.0\.", r"down.\1.downsample.", new)
        new = re.sub(r"up_blocks\.(\d+)\.resnets\.", lambda m: f"up.{last_up - int(m.group(1))}.block.", new)
        new = re.sub(r"up_blocks\.(\d+)\.upsamplers\.0\.", lambda m: f"up.{last_up - int(m.group(1))}.upsample.", new)
        new = re.sub(r"mid_block\.resnets\.(\d+)\.", lambda m: f"mid.block_{int(m.group(1)) + 1}.", new)
        if ".mid_block.attentions.0." in new:
            head, tail = new.split(".mid_block.attentions.0.", 1)
            tail = _rename(tail, _VAE_ATTN) or tail
            new = f"{head}.mid.attn_1.{tail}"
            if tail.endswith("weight") and value.ndim == 2:
                value = value[:, :, None, None]
        out[new] = value
    return out


CLIP_EXTRA_KEYS = ("text_projection.weight", "logit_scale", "text_model.embeddings.position_ids")


def clip_to_transformers(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CLIP-L text weights (bare or all-in-one) -> transformers 5 ``CLIPTextModel`` keys (no ``text_model.``)."""
    if any(k.startswith(CLIP_L_PREFIX) for k in state):
        state = convert_ldm_clip_checkpoint(dict(state), CLIP_L_PREFIX)
    out = {}
    for key, value in state.items():
        if key in CLIP_EXTRA_KEYS or key.endswith("position_ids"):
            continue
        out[key.removeprefix("text_model.")] = value
    return out


def clip_to_ldm(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``CLIPTextModel`` keys -> the conventional on-disk ``text_model.*`` layout (see training.md finding 6)."""
    return {k if k.startswith("text_model.") else "text_model." + k: v for k, v in state.items()
            if not k.endswith("position_ids")}


def t5_to_transformers(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """T5 encoder weights (bare or all-in-one) -> ``T5EncoderModel`` keys, tied embedding filled in."""
    if any(k.startswith(T5XXL_PREFIX) for k in state):
        state = convert_sd3_t5_checkpoint_to_diffusers(dict(state))
    out = dict(state)
    if "shared.weight" not in out and "encoder.embed_tokens.weight" in out:
        out["shared.weight"] = out["encoder.embed_tokens.weight"]
    if "shared.weight" in out:
        out.setdefault("encoder.embed_tokens.weight", out["shared.weight"])
    return out


def t5_to_disk(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``T5EncoderModel`` keys -> on-disk layout (the tied ``encoder.embed_tokens`` copy dropped)."""
    return {k: v for k, v in state.items() if k != "encoder.embed_tokens.weight"}


def all_in_one(transformer_bfl: Mapping[str, torch.Tensor], clip: Mapping[str, torch.Tensor],
               t5: Mapping[str, torch.Tensor], vae_ldm: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ComfyUI all-in-one checkpoint layout from on-disk component layouts."""
    out = add_prefix(transformer_bfl, TRANSFORMER_PREFIX)
    out.update(add_prefix(clip_to_ldm(clip), CLIP_L_PREFIX))
    out.update(add_prefix(t5, T5XXL_PREFIX))
    out.update(add_prefix(vae_ldm, ALL_IN_ONE_VAE_PREFIX))
    return out
