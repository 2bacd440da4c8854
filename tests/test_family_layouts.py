"""Full-size layouts: the shipped configs, exported to the original key layout on the meta device,
are recognised by our rules and by diffusers' own probes, and shape inference recovers the configs."""

from __future__ import annotations

import pytest
import torch

from modules.models.arch.overlay import build_component_configs, family_config
from modules.models.convert.ldm import diffusers_to_ldm
from modules.models.detect import detect_from_shapes
from modules.models.families import get_family

CASES = [("sd1", "v1"), ("sd2-768-v", "v2"), ("sdxl", "xl_base"), ("sdxl-refiner", "xl_refiner")]
UNET_KEYS = ("block_out_channels", "layers_per_block", "down_block_types", "up_block_types", "cross_attention_dim",
             "attention_head_dim", "use_linear_projection", "addition_time_embed_dim",
             "projection_class_embeddings_input_dim", "in_channels", "out_channels")
TE_KEYS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size",
           "max_position_embeddings")


def _meta_state(family_id: str) -> dict[str, torch.Tensor]:
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    family = get_family(family_id)
    clean = lambda name: {k: v for k, v in family_config(family, name).items()  # noqa: E731
                          if not k.startswith("_") and k != "architectures"}
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(clean("unet"))
        vae = AutoencoderKL.from_config(clean("vae"))
        encoders = {
            spec.component: (CLIPTextModelWithProjection if spec.with_projection else CLIPTextModel)(
                CLIPTextConfig(**clean(spec.component))).state_dict()
            for spec in family.text_encoders
        }
    return diffusers_to_ldm(unet.state_dict(), vae.state_dict(), encoders.get("text_encoder"),
                            unet_config=unet.config, family=family_id,
                            text_encoder_2_sd=encoders.get("text_encoder_2"))


@pytest.mark.parametrize(("family_id", "diffusers_type"), CASES)
def test_full_size_layout(family_id: str, diffusers_type: str) -> None:
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    family = get_family(family_id)
    state = _meta_state(family_id)
    assert infer_diffusers_model_type(state) == diffusers_type
    shapes = {key: tuple(value.shape) for key, value in state.items()}
    metadata = {"modelspec.prediction_type": "v"} if family_id == "sd2-768-v" else {}
    assert detect_from_shapes(family.config_path, shapes, metadata).family.id == family_id
    configs = build_component_configs(family, shapes, {})
    shipped_unet = family_config(family, "unet")
    for key in UNET_KEYS:
        if key in shipped_unet:
            assert configs.unet[key] == shipped_unet[key], key
    assert configs.unet.get("transformer_layers_per_block", 1) == shipped_unet.get("transformer_layers_per_block", 1)
    for spec in family.text_encoders:
        shipped = family_config(family, spec.component)
        for key in TE_KEYS:
            assert configs.text_encoders[spec.component][key] == shipped[key], (spec.component, key)
    assert configs.vae["block_out_channels"] == family_config(family, "vae")["block_out_channels"]


@pytest.mark.parametrize(("resblocks", "family_layers", "expected"), [
    (24, 23, 23),  # released SD 2.x checkpoints: 24 OpenCLIP layers, the last one unused
    (23, 23, 23),  # exported by diffusers' official script (no dummy final layer): keep all
    (3, 23, 2),  # scaled-down export carrying its unused final layer
])
def test_sd2_penultimate_layer_rule(resblocks: int, family_layers: int, expected: int) -> None:
    from modules.models.arch.clip import openclip_dims

    shapes = {"p.token_embedding.weight": (100, 8), "p.positional_embedding": (77, 8)}
    for i in range(resblocks):
        shapes[f"p.transformer.resblocks.{i}.mlp.c_fc.weight"] = (32, 8)
    dims = openclip_dims(shapes, "p.", drop_last_layer=True, with_projection=False, family_layers=family_layers)
    assert dims["num_hidden_layers"] == expected
    assert (dims["hidden_size"], dims["intermediate_size"], dims["vocab_size"]) == (8, 32, 100)
