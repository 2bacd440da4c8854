"""UNet2DConditionModel dimensions read from LDM UNet key shapes (prefix ``model.diffusion_model.``)."""

from __future__ import annotations

from modules.models.arch.shapes import Shapes, ShapeError, count, has_prefix, indices, need

#: Config keys this module derives from shapes (never needed in ``atelier.components`` metadata).
UNET_SHAPE_KEYS = frozenset({
    "in_channels", "out_channels", "block_out_channels", "layers_per_block", "down_block_types",
    "up_block_types", "transformer_layers_per_block", "cross_attention_dim", "use_linear_projection",
    "addition_embed_type", "addition_time_embed_dim", "projection_class_embeddings_input_dim",
    "num_class_embeds", "time_embedding_dim", "mid_block_type",
})


def unet_dims(shapes: Shapes, prefix: str, *, add_time_ids: int = 0, pooled_dim: int | None = None) -> dict:
    """Derive the UNet config fields in UNET_SHAPE_KEYS (plus ``_level_channels`` helpers)."""
    sub = {key[len(prefix):]: shape for key, shape in shapes.items() if key.startswith(prefix)}
    conv_in = need(sub, "input_blocks.0.0.weight")
    n_inputs = count(sub, "input_blocks.")
    downsamplers = [i for i in indices(sub, "input_blocks.") if f"input_blocks.{i}.0.op.weight" in sub]
    levels = len(downsamplers) + 1
    per_level, rem = divmod(n_inputs - 1 - (levels - 1), levels)
    if rem or per_level < 1:
        raise ShapeError(f"{n_inputs} input blocks do not form {levels} levels")
    stride = per_level + 1
    channels, down_types, depths = [], [], []
    for level in range(levels):
        block = f"input_blocks.{1 + level * stride}"
        channels.append(need(sub, f"{block}.0.in_layers.2.weight")[0])
        attn = f"{block}.1.transformer_blocks."
        depths.append(count(sub, attn) if has_prefix(sub, attn) else 0)
        down_types.append("CrossAttnDownBlock2D" if depths[-1] else "DownBlock2D")
    up_types, up_depths = [], []
    for level in range(levels):
        attn = f"output_blocks.{level * stride}.1.transformer_blocks."
        up_depths.append(count(sub, attn) if has_prefix(sub, attn) else 0)
        up_types.append("CrossAttnUpBlock2D" if up_depths[-1] else "UpBlock2D")
    if up_depths != depths[::-1]:
        raise ShapeError("asymmetric transformer depth between down and up blocks is not supported")
    if not has_prefix(sub, "middle_block.1.transformer_blocks."):
        raise ShapeError("UNet has no mid-block attention")
    mid = count(sub, "middle_block.1.transformer_blocks.")
    dims: dict = {
        "in_channels": conv_in[1],
        "out_channels": need(sub, "out.2.weight")[0],
        "block_out_channels": channels,
        "layers_per_block": per_level,
        "down_block_types": down_types,
        "up_block_types": up_types,
        "transformer_layers_per_block": _transformer_layers(depths, mid),
        "mid_block_type": "UNetMidBlock2DCrossAttn",
    }
    first = next(i for i, d in enumerate(depths) if d) if any(depths) else None
    if first is None:
        raise ShapeError("UNet has no cross-attention levels")
    attn = f"input_blocks.{1 + first * stride}.1."
    dims["use_linear_projection"] = len(need(sub, attn + "proj_in.weight")) == 2
    dims["cross_attention_dim"] = need(sub, attn + "transformer_blocks.0.attn2.to_k.weight")[1]
    time_dim = need(sub, "time_embed.0.weight")[0]
    dims["time_embedding_dim"] = None if time_dim == channels[0] * 4 else time_dim
    dims.update(_label_embedding(sub, add_time_ids, pooled_dim))
    return dims


def _label_embedding(sub: Shapes, add_time_ids: int, pooled_dim: int | None) -> dict:
    """SDXL ``label_emb`` (text_time add-embedding) or a class-embedding table."""
    if "label_emb.0.0.weight" in sub:
        adm_in = sub["label_emb.0.0.weight"][1]
        if not add_time_ids or pooled_dim is None:
            raise ShapeError("UNet has an SDXL-style label embedding but the family has no pooled text embeds")
        time_dim, rem = divmod(adm_in - pooled_dim, add_time_ids)
        if rem or time_dim <= 0:
            raise ShapeError(f"label embedding input {adm_in} does not fit {add_time_ids} time ids + {pooled_dim}")
        return {
            "addition_embed_type": "text_time",
            "addition_time_embed_dim": time_dim,
            "projection_class_embeddings_input_dim": adm_in,
        }
    if "label_emb.weight" in sub:
        return {"num_class_embeds": sub["label_emb.weight"][0]}
    if add_time_ids:
        raise ShapeError("SDXL-family UNet lacks its label embedding (label_emb)")
    return {}


def _transformer_layers(depths: list[int], mid: int) -> int | list[int]:
    """diffusers ``transformer_layers_per_block``: one int when every attention level and the mid block
    agree (SD 1/2: 1, SDXL refiner: 4), else a per-level list whose last entry is the mid-block depth
    (levels without attention get 1, as in SDXL base's [1, 2, 10])."""
    attention = [d for d in depths if d]
    if all(d == mid for d in attention):
        return mid
    if depths[-1] not in (0, mid):
        raise ShapeError("mid-block transformer depth differs from the last level's")
    layers = [d or 1 for d in depths]
    layers[-1] = mid
    return layers


def head_counts(channels: list[int], head_channels: int) -> list[int] | None:
    """Attention heads per level when every level's width is a multiple of ``head_channels``."""
    if all(c % head_channels == 0 for c in channels):
        return [c // head_channels for c in channels]
    return None
