"""AutoencoderKL dimensions read from LDM VAE key shapes (``first_stage_model.`` or bare)."""

from __future__ import annotations

from modules.models.arch.shapes import Shapes, count, need

VAE_SHAPE_KEYS = frozenset({
    "in_channels", "out_channels", "block_out_channels", "layers_per_block", "latent_channels",
    "down_block_types", "up_block_types", "use_quant_conv", "use_post_quant_conv", "mid_block_add_attention",
})


def vae_dims(shapes: Shapes, prefix: str) -> dict:
    """Derive the VAE config fields in VAE_SHAPE_KEYS."""
    sub = {key[len(prefix):]: shape for key, shape in shapes.items() if key.startswith(prefix)}
    levels = count(sub, "encoder.down.")
    channels = [need(sub, f"encoder.down.{i}.block.0.conv1.weight")[0] for i in range(levels)]
    return {
        "in_channels": need(sub, "encoder.conv_in.weight")[1],
        "out_channels": need(sub, "decoder.conv_out.weight")[0],
        "block_out_channels": channels,
        "layers_per_block": count(sub, "encoder.down.0.block."),
        "latent_channels": need(sub, "decoder.conv_in.weight")[1],
        "down_block_types": ["DownEncoderBlock2D"] * levels,
        "up_block_types": ["UpDecoderBlock2D"] * levels,
        "use_quant_conv": "quant_conv.weight" in sub,
        "use_post_quant_conv": "post_quant_conv.weight" in sub,
        "mid_block_add_attention": "encoder.mid.attn_1.q.weight" in sub,
    }
