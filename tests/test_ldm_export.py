"""diffusers -> LDM export round-trips bit-exactly through the loader."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from modules.models.convert.ldm import diffusers_to_ldm, save_ldm_checkpoint
from modules.models.loader import LoadOptions, load_model
from tests.fixtures.tiny_models import build_tiny_components, ldm_metadata, ldm_state_dict

pytestmark = pytest.mark.usefixtures("no_network")
NETWORKS = ("unet", "vae", "text_encoder", "text_encoder_2")


def _export(family_id: str, pipeline: object) -> dict[str, torch.Tensor]:
    parts = {name: getattr(pipeline, name, None) for name in NETWORKS}
    return diffusers_to_ldm(
        parts["unet"].state_dict(), parts["vae"].state_dict(),
        parts["text_encoder"].state_dict() if parts["text_encoder"] is not None else None,
        unet_config=parts["unet"].config, family=family_id,
        text_encoder_2_sd=parts["text_encoder_2"].state_dict() if parts["text_encoder_2"] is not None else None,
    )


@pytest.mark.parametrize("family_id", ["sd1", "sd2-768-v", "sdxl", "sdxl-refiner"])
def test_round_trip_is_bit_exact(tmp_path: Path, model_cache_dir: Path, family_id: str) -> None:
    components = build_tiny_components(family_id, seed=11)
    exported = ldm_state_dict(family_id, components)
    path = save_ldm_checkpoint(tmp_path / "export.safetensors", exported, ldm_metadata(family_id, components))
    loaded = load_model(path, LoadOptions(cache_dir=model_cache_dir)).pipeline
    for name, original in components.items():
        want, got = original.state_dict(), getattr(loaded, name).state_dict()
        assert want.keys() == got.keys(), name
        for key in want:
            assert want[key].dtype == got[key].dtype and torch.equal(want[key], got[key]), f"{name}.{key}"
    again = _export(family_id, loaded)
    assert again.keys() == exported.keys()
    assert all(torch.equal(again[k], exported[k]) for k in exported)


def test_layout_details(tmp_path: Path) -> None:
    components = build_tiny_components("sd1")
    assert not any(k.startswith("text_model.") for k in components["text_encoder"].state_dict())  # transformers 5
    state = ldm_state_dict("sd1", components)
    te_keys = [k for k in state if k.startswith("cond_stage_model.")]
    assert te_keys and all(k.startswith("cond_stage_model.transformer.text_model.") for k in te_keys)
    assert state["first_stage_model.encoder.mid.attn_1.q.weight"].ndim == 4
    assert "first_stage_model.decoder.up.3.upsample.conv.weight" in state  # LDM numbers up blocks in reverse:
    assert "first_stage_model.decoder.up.0.upsample.conv.weight" not in state  # level 0 is full resolution
    assert "model.diffusion_model.output_blocks.11.0.skip_connection.weight" in state
    assert "model.diffusion_model.output_blocks.2.1.conv.weight" in state  # upsampler after a non-attention level
    assert "model.diffusion_model.output_blocks.5.2.conv.weight" in state  # upsampler after an attention level


def test_sd2_export_carries_openclip_dummies_that_the_loader_drops(tmp_path: Path) -> None:
    components = build_tiny_components("sd2-512")
    state = ldm_state_dict("sd2-512", components)
    layers = components["text_encoder"].config.num_hidden_layers
    prefix = "cond_stage_model.model."
    assert f"{prefix}transformer.resblocks.{layers}.attn.in_proj_weight" in state  # unused final layer
    assert state[f"{prefix}transformer.resblocks.0.attn.in_proj_weight"].shape == (3 * 8, 8)
    assert f"{prefix}text_projection" in state and f"{prefix}logit_scale" in state


def test_sdxl_text_projection_is_transposed(tmp_path: Path) -> None:
    components = build_tiny_components("sdxl")
    state = ldm_state_dict("sdxl", components)
    projection = components["text_encoder_2"].state_dict()["text_projection.weight"]
    assert torch.equal(state["conditioner.embedders.1.model.text_projection"], projection.T)
    assert "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight" in state


def test_save_writes_metadata_atomically(tmp_path: Path) -> None:
    path = save_ldm_checkpoint(tmp_path / "out" / "m.safetensors", {"a": torch.ones(2)}, {"k": "v"})
    with safe_open(str(path), "pt") as handle:
        assert handle.metadata() == {"k": "v"}
    assert [p.name for p in path.parent.iterdir()] == ["m.safetensors"]
    with pytest.raises(TypeError, match="str to str"):
        save_ldm_checkpoint(tmp_path / "x.safetensors", {"a": torch.ones(1)}, {"steps": 5})  # type: ignore[dict-item]


def test_flux_has_no_ldm_layout() -> None:
    with pytest.raises(ValueError, match="no LDM single-file layout"):
        diffusers_to_ldm({}, {}, {}, unet_config={}, family="flux-dev")
