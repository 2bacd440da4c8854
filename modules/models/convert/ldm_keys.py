"""Config-driven key maps from diffusers component names to the original LDM/SGM single-file names.

One definition of the single-file layout serves both directions: the exporter renames with these maps,
and the importer uses them to compute the exact key set a checkpoint must hold (strict checking) before
handing the tensors to diffusers' own converters. Keys are given without the component prefix
(``model.diffusion_model.``, ``first_stage_model.``, ...). Text-encoder maps accept both the
``text_model.``-prefixed and the transformers-5 prefix-less CLIP names.
"""

from __future__ import annotations

import re
from typing import Iterable, Mapping

_RESNET = (
    ("norm1.", "in_layers.0."), ("conv1.", "in_layers.2."), ("norm2.", "out_layers.0."),
    ("conv2.", "out_layers.3."), ("time_emb_proj.", "emb_layers.1."), ("conv_shortcut.", "skip_connection."),
)
_UNET_FIXED = (
    ("time_embedding.linear_1.", "time_embed.0."), ("time_embedding.linear_2.", "time_embed.2."),
    ("conv_in.", "input_blocks.0.0."), ("conv_norm_out.", "out.0."), ("conv_out.", "out.2."),
    ("add_embedding.linear_1.", "label_emb.0.0."), ("add_embedding.linear_2.", "label_emb.0.2."),
    ("class_embedding.linear_1.", "label_emb.0.0."), ("class_embedding.linear_2.", "label_emb.0.2."),
    ("class_embedding.weight", "label_emb.weight"),
)
_DOWN = re.compile(r"^down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)$")
_DOWNSAMPLE = re.compile(r"^down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)$")
_MID = re.compile(r"^mid_block\.(resnets|attentions)\.(\d+)\.(.+)$")
_UP = re.compile(r"^up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)$")
_UPSAMPLE = re.compile(r"^up_blocks\.(\d+)\.upsamplers\.0\.(.+)$")


class LayoutError(ValueError):
    """A diffusers key has no place in the original layout."""


def _resnet(rest: str, table: tuple[tuple[str, str], ...] = _RESNET) -> str:
    for new, old in table:
        if rest.startswith(new):
            return old + rest[len(new):]
    return rest


def unet_key_map(keys: Iterable[str], config: Mapping[str, object]) -> dict[str, str]:
    """diffusers UNet2DConditionModel key -> LDM ``model.diffusion_model.`` key (prefix excluded)."""
    per_level = config["layers_per_block"]
    if not isinstance(per_level, int):
        raise LayoutError("per-level layers_per_block lists have no LDM layout")
    stride = per_level + 1
    up_attention = [str(t).startswith("CrossAttn") for t in config["up_block_types"]]  # type: ignore[union-attr]
    out: dict[str, str] = {}
    for key in keys:
        out[key] = _unet_key(key, stride, per_level, up_attention)
    return out


def _unet_key(key: str, stride: int, per_level: int, up_attention: list[bool]) -> str:
    for new, old in _UNET_FIXED:
        if key.startswith(new):
            return old + key[len(new):]
    if match := _DOWN.match(key):
        level, kind, index, rest = int(match[1]), match[2], int(match[3]), match[4]
        block = 1 + level * stride + index
        return f"input_blocks.{block}.0.{_resnet(rest)}" if kind == "resnets" else f"input_blocks.{block}.1.{rest}"
    if match := _DOWNSAMPLE.match(key):
        return f"input_blocks.{(int(match[1]) + 1) * stride}.0.op.{match[2]}"
    if match := _MID.match(key):
        kind, index, rest = match[1], int(match[2]), match[3]
        return f"middle_block.{2 * index}.{_resnet(rest)}" if kind == "resnets" else f"middle_block.1.{rest}"
    if match := _UP.match(key):
        level, kind, index, rest = int(match[1]), match[2], int(match[3]), match[4]
        block = level * stride + index
        return f"output_blocks.{block}.0.{_resnet(rest)}" if kind == "resnets" else f"output_blocks.{block}.1.{rest}"
    if match := _UPSAMPLE.match(key):
        level = int(match[1])
        slot = 2 if up_attention[level] else 1
        return f"output_blocks.{level * stride + per_level}.{slot}.{match[2]}"
    raise LayoutError(f"UNet key '{key}' has no LDM equivalent")


_VAE_ATTN = (("group_norm.", "norm."), ("to_q.", "q."), ("to_k.", "k."), ("to_v.", "v."), ("to_out.0.", "proj_out."))
_VAE_RESNET = (("conv_shortcut.", "nin_shortcut."),)
_VAE_DOWN = re.compile(r"^encoder\.down_blocks\.(\d+)\.(resnets\.(\d+)|downsamplers\.0)\.(.+)$")
_VAE_UP = re.compile(r"^decoder\.up_blocks\.(\d+)\.(resnets\.(\d+)|upsamplers\.0)\.(.+)$")
_VAE_MID = re.compile(r"^(encoder|decoder)\.mid_block\.(resnets\.(\d+)|attentions\.0)\.(.+)$")
#: mid-attention weights that are 1x1 convolutions in the LDM layout
VAE_CONV_ATTENTION = ("q.weight", "k.weight", "v.weight", "proj_out.weight")


def vae_key_map(keys: Iterable[str], config: Mapping[str, object]) -> dict[str, str]:
    """diffusers AutoencoderKL key -> LDM ``first_stage_model.`` key (prefix excluded)."""
    levels = len(config["up_block_types"])  # type: ignore[arg-type]
    return {key: _vae_key(key, levels) for key in keys}


def _vae_key(key: str, levels: int) -> str:
    if match := _VAE_DOWN.match(key):
        level, rest = match[1], match[4]
        if match[3] is None:
            return f"encoder.down.{level}.downsample.{rest}"
        return f"encoder.down.{level}.block.{match[3]}.{_resnet(rest, _VAE_RESNET)}"
    if match := _VAE_UP.match(key):
        level, rest = levels - 1 - int(match[1]), match[4]
        if match[3] is None:
            return f"decoder.up.{level}.upsample.{rest}"
        return f"decoder.up.{level}.block.{match[3]}.{_resnet(rest, _VAE_RESNET)}"
    if match := _VAE_MID.match(key):
        part, rest = match[1], match[4]
        if match[3] is None:
            return f"{part}.mid.attn_1.{_resnet(rest, _VAE_ATTN)}"
        return f"{part}.mid.block_{int(match[3]) + 1}.{_resnet(rest, _VAE_RESNET)}"
    for part in ("encoder.", "decoder."):
        if key.startswith(part + "conv_norm_out."):
            return part + "norm_out." + key[len(part + "conv_norm_out."):]
    if key.split(".")[0] in ("encoder", "decoder", "quant_conv", "post_quant_conv"):
        return key
    raise LayoutError(f"VAE key '{key}' has no LDM equivalent")


def normalise_clip_key(key: str) -> str:
    """Give a CLIP text-model key the ``text_model.`` prefix (transformers 5 writes it without)."""
    if key.startswith("text_model.") or key.startswith("text_projection."):
        return key
    return "text_model." + key


def clip_key_map(keys: Iterable[str]) -> dict[str, str]:
    """diffusers/transformers CLIPTextModel key -> LDM key under ``cond_stage_model.transformer.``.

    Output is always ``text_model.*`` (the conventional LDM form); ``position_ids`` buffers are skipped.
    """
    out: dict[str, str] = {}
    for key in keys:
        if key.endswith("position_ids"):
            continue
        name = normalise_clip_key(key)
        if not name.startswith("text_model."):
            raise LayoutError(f"text encoder key '{key}' has no place under an LDM CLIP-L encoder")
        out[key] = name
    return out


_OC_LAYER = re.compile(r"^text_model\.encoder\.layers\.(\d+)\.(.+)$")
_OC_LAYER_PARTS = (
    ("layer_norm1.", "ln_1."), ("layer_norm2.", "ln_2."), ("mlp.fc1.", "mlp.c_fc."), ("mlp.fc2.", "mlp.c_proj."),
    ("self_attn.out_proj.", "attn.out_proj."),
)
_OC_FIXED = {
    "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
    "text_model.embeddings.position_embedding.weight": "positional_embedding",
    "text_model.final_layer_norm.weight": "ln_final.weight",
    "text_model.final_layer_norm.bias": "ln_final.bias",
    "text_projection.weight": "text_projection",
}
_QKV = re.compile(r"^self_attn\.([qkv])_proj\.(weight|bias)$")


def openclip_key_map(keys: Iterable[str]) -> dict[str, tuple[str, str | None]]:
    """CLIP key -> (OpenCLIP key, q/k/v part or None). q/k/v projections share one ``in_proj_*`` key."""
    out: dict[str, tuple[str, str | None]] = {}
    for key in keys:
        if key.endswith("position_ids"):
            continue
        name = normalise_clip_key(key)
        if name in _OC_FIXED:
            out[key] = (_OC_FIXED[name], None)
            continue
        match = _OC_LAYER.match(name)
        if match is None:
            raise LayoutError(f"text encoder key '{key}' has no OpenCLIP equivalent")
        layer, rest = match[1], match[2]
        if qkv := _QKV.match(rest):
            out[key] = (f"transformer.resblocks.{layer}.attn.in_proj_{qkv[2]}", qkv[1])
            continue
        mapped = _resnet(rest, _OC_LAYER_PARTS)
        if mapped == rest:
            raise LayoutError(f"text encoder key '{key}' has no OpenCLIP equivalent")
        out[key] = (f"transformer.resblocks.{layer}.{mapped}", None)
    return out
