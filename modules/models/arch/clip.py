"""CLIP text-encoder dimensions from HF-CLIP or OpenCLIP key shapes."""

from __future__ import annotations

from modules.models.arch.shapes import Shapes, ShapeError, count, need
from modules.models.convert.ldm_keys import normalise_clip_key

CLIP_SHAPE_KEYS = frozenset({
    "vocab_size", "hidden_size", "max_position_embeddings", "intermediate_size", "num_hidden_layers",
    "projection_dim",
})


def clip_dims(shapes: Shapes, prefix: str) -> dict:
    """HF CLIP layout (``text_model.`` prefixed or transformers-5 prefix-less) under ``prefix``."""
    sub = {normalise_clip_key(k[len(prefix):]): s for k, s in shapes.items() if k.startswith(prefix)}
    vocab, hidden = need(sub, "text_model.embeddings.token_embedding.weight")
    return {
        "vocab_size": vocab,
        "hidden_size": hidden,
        "max_position_embeddings": need(sub, "text_model.embeddings.position_embedding.weight")[0],
        "intermediate_size": need(sub, "text_model.encoder.layers.0.mlp.fc1.weight")[0],
        "num_hidden_layers": count(sub, "text_model.encoder.layers."),
    }


def openclip_dims(
    shapes: Shapes, prefix: str, *, drop_last_layer: bool, with_projection: bool, family_layers: int | None
) -> dict:
    """OpenCLIP layout under ``prefix``.

    With ``drop_last_layer`` (SD 2.x conditions on the penultimate layer) a file that holds one layer
    more than the family's encoder (the released 24-layer ViT-H, or a scaled export carrying its
    unused final layer) loads without it; a file that already has exactly the family's count keeps all.
    """
    sub = {k[len(prefix):]: s for k, s in shapes.items() if k.startswith(prefix)}
    vocab, hidden = need(sub, "token_embedding.weight")
    layers = count(sub, "transformer.resblocks.")
    if drop_last_layer and layers != family_layers:
        layers -= 1
    if layers < 1:
        raise ShapeError("OpenCLIP text encoder has no usable layers")
    dims = {
        "vocab_size": vocab,
        "hidden_size": hidden,
        "max_position_embeddings": need(sub, "positional_embedding")[0],
        "intermediate_size": need(sub, "transformer.resblocks.0.mlp.c_fc.weight")[0],
        "num_hidden_layers": layers,
    }
    if with_projection:
        dims["projection_dim"] = need(sub, "text_projection")[1]
    return dims
