"""FLUX.1 component configs read from key shapes (diffusers / transformers layouts), and their checks.

Each ``*_config`` returns only what the shapes prove; the caller lays it over the shipped config
and the ``atelier.components`` metadata. Each ``check_*`` rejects a merged config the network
could not be built from, naming the metadata field that would fix it.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

from modules.models.errors import ModelLoadError
from modules.models.flux_source import METADATA_KEY, ComponentSource

Shapes = Mapping[str, tuple[int, ...]]


def _count(keys: Iterable[str], pattern: str) -> int:
    found = {int(m.group(1)) for k in keys if (m := re.match(pattern, k))}
    return max(found) + 1 if found else 0


def _shape(shapes: Shapes, key: str, source: ComponentSource) -> tuple[int, ...]:
    if key not in shapes:
        raise ModelLoadError(source.path, f"{source.component} weights lack '{key}'")
    return shapes[key]


def transformer_config(shapes: Shapes, source: ComponentSource) -> dict[str, Any]:
    """``FluxTransformer2DModel``: width, heads (RMS-norm size = head size), blocks, text widths."""
    inner, in_channels = _shape(shapes, "x_embedder.weight", source)
    layers = _count(shapes, r"transformer_blocks\.(\d+)\.")
    singles = _count(shapes, r"single_transformer_blocks\.(\d+)\.")
    block = "transformer_blocks.0." if layers else "single_transformer_blocks.0."
    head_dim = _shape(shapes, block + "attn.norm_q.weight", source)[0]
    if inner % head_dim:
        raise ModelLoadError(source.path, f"transformer width {inner} is not a multiple of head size {head_dim}")
    mlp_key = block + ("ff.net.0.proj.weight" if layers else "proj_mlp.weight")
    if _shape(shapes, mlp_key, source)[0] != 4 * inner:
        raise ModelLoadError(source.path, f"transformer MLP width is not 4 x {inner}; not a FLUX.1 layout")
    out_channels = _shape(shapes, "proj_out.weight", source)[0]
    if out_channels != in_channels:
        raise ModelLoadError(
            source.path, f"transformer takes {in_channels} input channels for {out_channels} output channels "
            "(FLUX.1 Fill/Depth/Canny); only text-to-image FLUX.1 dev/schnell is supported")
    return {
        "in_channels": in_channels,
        "num_layers": layers,
        "num_single_layers": singles,
        "attention_head_dim": head_dim,
        "num_attention_heads": inner // head_dim,
        "joint_attention_dim": _shape(shapes, "context_embedder.weight", source)[1],
        "pooled_projection_dim": _shape(shapes, "time_text_embed.text_embedder.linear_1.weight", source)[1],
        "guidance_embeds": "time_text_embed.guidance_embedder.linear_1.weight" in shapes,
    }


def vae_config(shapes: Shapes, source: ComponentSource) -> dict[str, Any]:
    """``AutoencoderKL``: channels per level, blocks per level, latent channels, quant convs."""
    blocks = _count(shapes, r"encoder\.down_blocks\.(\d+)\.")
    return {
        "in_channels": _shape(shapes, "encoder.conv_in.weight", source)[1],
        "out_channels": _shape(shapes, "decoder.conv_out.weight", source)[0],
        "latent_channels": _shape(shapes, "decoder.conv_in.weight", source)[1],
        "block_out_channels": [
            _shape(shapes, f"encoder.down_blocks.{i}.resnets.0.conv2.weight", source)[0] for i in range(blocks)
        ],
        "layers_per_block": _count(shapes, r"encoder\.down_blocks\.0\.resnets\.(\d+)\."),
        "down_block_types": ["DownEncoderBlock2D"] * blocks,
        "up_block_types": ["UpDecoderBlock2D"] * blocks,
        "use_quant_conv": "quant_conv.weight" in shapes,
        "use_post_quant_conv": "post_quant_conv.weight" in shapes,
        "mid_block_add_attention": "encoder.mid_block.attentions.0.to_q.weight" in shapes,
    }


def clip_config(shapes: Shapes, source: ComponentSource) -> dict[str, Any]:
    """``CLIPTextModel`` (transformers 5 layout): vocabulary, width, positions, layers, MLP width."""
    vocab, hidden = _shape(shapes, "embeddings.token_embedding.weight", source)
    return {
        "vocab_size": vocab,
        "hidden_size": hidden,
        "max_position_embeddings": _shape(shapes, "embeddings.position_embedding.weight", source)[0],
        "num_hidden_layers": _count(shapes, r"encoder\.layers\.(\d+)\."),
        "intermediate_size": _shape(shapes, "encoder.layers.0.mlp.fc1.weight", source)[0],
    }


def t5_config(shapes: Shapes, source: ComponentSource) -> dict[str, Any]:
    """``T5EncoderModel``: the head count is the width of the relative-position table."""
    vocab, d_model = _shape(shapes, "shared.weight", source)
    attn = "encoder.block.0.layer.0.SelfAttention."
    buckets, heads = _shape(shapes, attn + "relative_attention_bias.weight", source)
    gated = "encoder.block.0.layer.1.DenseReluDense.wi_0.weight" in shapes
    d_ff_key = "encoder.block.0.layer.1.DenseReluDense." + ("wi_0.weight" if gated else "wi.weight")
    layers = _count(shapes, r"encoder\.block\.(\d+)\.")
    return {
        "vocab_size": vocab,
        "d_model": d_model,
        "num_layers": layers,
        "num_decoder_layers": layers,
        "num_heads": heads,
        "d_kv": _shape(shapes, attn + "q.weight", source)[0] // heads,
        "d_ff": _shape(shapes, d_ff_key, source)[0],
        "relative_attention_num_buckets": buckets,
        "feed_forward_proj": "gated-gelu" if gated else "relu",
    }


def _divides(config: Mapping[str, Any], source: ComponentSource, parts_key: str, widths: Iterable[int]) -> None:
    parts = config[parts_key]
    bad = [w for w in widths if w % parts]
    if bad:
        raise ModelLoadError(
            source.path, f"{source.component} width {bad[0]} is not divisible by {parts_key}={parts}; "
            f"set {source.component}.{parts_key} in the '{METADATA_KEY}' metadata")


def check_transformer(config: Mapping[str, Any], source: ComponentSource) -> None:
    axes = list(config.get("axes_dims_rope", ()))
    if sum(axes) != config["attention_head_dim"]:
        raise ModelLoadError(
            source.path, f"RoPE axes {axes} do not add up to the head size {config['attention_head_dim']}; "
            f"set transformer.axes_dims_rope in the '{METADATA_KEY}' metadata")


def check_vae(config: Mapping[str, Any], source: ComponentSource) -> None:
    _divides(config, source, "norm_num_groups", config["block_out_channels"])


def check_clip(config: Mapping[str, Any], source: ComponentSource) -> None:
    _divides(config, source, "num_attention_heads", [config["hidden_size"]])


def check_nothing(config: Mapping[str, Any], source: ComponentSource) -> None:
    """T5: every dimension comes from the shapes."""
