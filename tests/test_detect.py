"""Family registry and header/folder detection."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from modules.models.detect import detect_checkpoint, detect_from_shapes, rule_matches
from modules.models.errors import ModelLoadError
from modules.models.families import FAMILIES, KeyRule, UnknownFamilyError, get_family

FAMILY_OF = {"sd1": "sd1", "sd1-inpaint": "sd1", "sd2-512": "sd2-512", "sd2-768-v": "sd2-768-v",
             "sdxl": "sdxl", "sdxl-refiner": "sdxl-refiner"}


def test_registry_has_the_seven_families_with_shipped_configs() -> None:
    expected = ["sd1", "sd2-512", "sd2-768-v", "sdxl", "sdxl-refiner", "flux-dev", "flux-schnell"]
    assert [f.id for f in FAMILIES] == expected
    for family in FAMILIES:
        assert get_family(family.id) is family
        assert (family.config_path / "model_index.json").is_file(), family.id
        assert family.size_multiple == (16 if family.architecture == "flux" else 8)
        assert family.min_size <= family.default_size[0] <= family.max_size
    assert get_family("sd2-768-v").prediction_type == "v_prediction"
    assert not get_family("sdxl-refiner").supports_txt2img
    assert get_family("sdxl").pipelines["txt2img"] == "StableDiffusionXLPipeline"
    with pytest.raises(UnknownFamilyError, match="unknown model family 'sd9'"):
        get_family("sd9")


@pytest.mark.parametrize("family_id", ["sd1", "sd2-512", "sd2-768-v", "sdxl", "sdxl-refiner"])
def test_shipped_config_folder_is_complete(family_id: str) -> None:
    family = get_family(family_id)
    index = json.loads((family.config_path / "model_index.json").read_text())
    assert index["_class_name"] in family.folder_rule.pipeline_classes
    assert (family.config_path / "scheduler" / "scheduler_config.json").is_file()
    for name, entry in index.items():
        if isinstance(entry, list) and entry[0] in ("diffusers", "transformers") and name != "scheduler":
            tokenizer = name.startswith("tokenizer")
            for file in ("tokenizer_config.json", "special_tokens_map.json") if tokenizer else ("config.json",):
                assert (family.config_path / name / file).is_file(), f"{family_id}/{name}/{file}"


def test_rule_semantics() -> None:
    rule = KeyRule(all_of=("a.",), any_of=(("b.", "c."),), none_of=("d.",))
    assert rule_matches(rule, ["a.x", "c.y"])
    assert not rule_matches(rule, ["a.x"])
    assert not rule_matches(rule, ["a.x", "b.y", "d.z"])


@pytest.mark.parametrize("key", sorted(FAMILY_OF))
@pytest.mark.parametrize("fmt", ["single", "diffusers"])
def test_tiny_checkpoints_are_detected(tiny_checkpoints: dict, key: str, fmt: str) -> None:
    detection = detect_checkpoint(tiny_checkpoints[key][fmt])
    assert detection.family.id == FAMILY_OF[key]
    assert detection.variant["inpaint"] is (key == "sd1-inpaint")
    assert detection.variant["prediction_type"] == detection.family.prediction_type
    assert detection.family.label in detection.reason


def test_detection_ignores_file_names_and_tensor_data(tiny_checkpoints: dict, tmp_path: Path) -> None:
    misleading = tmp_path / "sd_xl_base_1.0_v-pred_flux.safetensors"
    data = bytearray(tiny_checkpoints["sd1"]["single"].read_bytes())
    header_len = int.from_bytes(data[:8], "little")
    data[8 + header_len:] = b"\x00" * (len(data) - 8 - header_len)  # header intact, tensor bytes wiped
    misleading.write_bytes(bytes(data))
    assert detect_checkpoint(misleading).family.id == "sd1"


def _header_only(path: Path, keys: dict[str, tuple[int, ...]], metadata: dict[str, str] | None = None) -> Path:
    save_file({key: torch.zeros(shape) for key, shape in keys.items()}, str(path), metadata=metadata)
    return path


@pytest.mark.parametrize("prefix", ["", "model.diffusion_model."])
def test_flux_dev_and_schnell_by_guidance_in(tmp_path: Path, prefix: str) -> None:
    base = {prefix + "double_blocks.0.img_attn.qkv.weight": (6, 2), prefix + "img_in.weight": (2, 64)}
    dev = _header_only(tmp_path / "a.safetensors", {**base, prefix + "guidance_in.in_layer.weight": (2, 4)})
    schnell = _header_only(tmp_path / "b.safetensors", base)
    assert detect_checkpoint(dev).family.id == "flux-dev"
    assert detect_checkpoint(schnell).family.id == "flux-schnell"
    assert detect_checkpoint(schnell).variant["inpaint"] is False


def test_flux_fill_variant(tmp_path: Path) -> None:
    path = _header_only(tmp_path / "c.safetensors", {"double_blocks.0.img_attn.qkv.weight": (6, 2),
                                                     "guidance_in.in_layer.weight": (2, 4), "img_in.weight": (2, 384)})
    assert detect_checkpoint(path).variant["inpaint"] is True


def test_unknown_architecture_names_file_and_reason(tmp_path: Path) -> None:
    classifier = _header_only(tmp_path / "resnet.safetensors", {"fc.weight": (10, 4), "fc.bias": (10,)})
    with pytest.raises(ModelLoadError, match=r"'resnet\.safetensors'.*unknown architecture.*'fc\.weight'"):
        detect_checkpoint(classifier)


def test_unet_without_text_encoder_is_unknown_with_hint(tmp_path: Path) -> None:
    bare = _header_only(tmp_path / "unet.safetensors", {"model.diffusion_model.input_blocks.0.0.weight": (8, 4, 3, 3)})
    with pytest.raises(ModelLoadError, match="found LDM UNet"):
        detect_checkpoint(bare)


SD2_KEYS = {"model.diffusion_model.input_blocks.0.0.weight": (8, 4, 3, 3),
            "cond_stage_model.model.transformer.resblocks.0.ln_1.weight": (8,)}


@pytest.mark.parametrize(("metadata", "family_id", "source"), [
    ({}, "sd2-512", "default"),
    ({"modelspec.prediction_type": "v"}, "sd2-768-v", "metadata"),
    ({"modelspec.prediction_type": "epsilon"}, "sd2-512", "metadata"),
])
def test_sd2_prediction_from_metadata(metadata: dict, family_id: str, source: str) -> None:
    detection = detect_from_shapes(Path("x.safetensors"), SD2_KEYS, metadata)
    assert detection.family.id == family_id
    assert detection.variant["prediction_source"] == source
    assert detection.variant.get("prediction_probe", False) is (source == "default")


def test_sd2_prediction_from_a1111_sidecar_yaml(tmp_path: Path) -> None:
    path = _header_only(tmp_path / "model.safetensors", SD2_KEYS)
    (tmp_path / "model.yaml").write_text('model:\n  params:\n    parameterization: "v"\n    linear_start: 0.00085\n')
    detection = detect_checkpoint(path)
    assert (detection.family.id, detection.variant["prediction_source"]) == ("sd2-768-v", "sidecar")
    (tmp_path / "model.yaml").write_text("model:\n  params:\n    linear_start: 0.00085\n")
    assert detect_checkpoint(path).family.id == "sd2-512"


def test_sd2_user_override_wins_over_metadata(tmp_path: Path) -> None:
    path = _header_only(tmp_path / "m.safetensors", SD2_KEYS, {"modelspec.prediction_type": "epsilon"})
    detection = detect_checkpoint(path, prediction_type="v_prediction")
    assert (detection.family.id, detection.variant["prediction_source"]) == ("sd2-768-v", "override")
    with pytest.raises(ModelLoadError, match="unknown prediction type override"):
        detect_checkpoint(path, prediction_type="x0")


SD1_KEYS = {"model.diffusion_model.input_blocks.0.0.weight": (8, 4, 3, 3),
            "cond_stage_model.transformer.text_model.encoder.layers.0.mlp.fc1.weight": (8, 8)}


@pytest.mark.parametrize(("metadata", "prediction", "source"), [
    ({}, "epsilon", "family"),
    ({"modelspec.prediction_type": "v"}, "v_prediction", "metadata"),
    ({"modelspec.prediction_type": "epsilon"}, "epsilon", "metadata"),
])
def test_sd1_v_prediction_fine_tunes_declare_it(metadata: dict, prediction: str, source: str) -> None:
    detection = detect_from_shapes(Path("x.safetensors"), SD1_KEYS, metadata)
    assert detection.family.id == "sd1"
    assert (detection.variant["prediction_type"], detection.variant["prediction_source"]) == (prediction, source)
    assert "prediction_probe" not in detection.variant  # A1111 probes SD 2.x only


def test_sd1_v_prediction_from_sidecar_and_override(tmp_path: Path) -> None:
    path = _header_only(tmp_path / "model.safetensors", SD1_KEYS)
    (tmp_path / "model.yaml").write_text('model:\n  params:\n    parameterization: "v"\n')
    assert detect_checkpoint(path).variant["prediction_type"] == "v_prediction"
    assert detect_checkpoint(path, prediction_type="epsilon").variant["prediction_source"] == "override"


def test_comfyui_marker_keys_declare_v_prediction_and_zero_terminal_snr() -> None:
    marked = {**SD1_KEYS, "v_pred": (0,), "ztsnr": (0,)}
    detection = detect_from_shapes(Path("x.safetensors"), marked, {})
    assert (detection.variant["prediction_type"], detection.variant["prediction_source"]) == ("v_prediction", "marker key")
    assert detection.variant["zero_terminal_snr"] is True
    assert detect_from_shapes(Path("x.safetensors"), SD1_KEYS, {}).variant["zero_terminal_snr"] is False
    # an explicit declaration still wins over the marker
    declared = detect_from_shapes(Path("x.safetensors"), marked, {"modelspec.prediction_type": "epsilon"})
    assert declared.variant["prediction_source"] == "metadata"


def test_diffusers_folder_sd1_vs_sd2_by_text_encoder(tiny_checkpoints: dict, tmp_path: Path) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(tiny_checkpoints["sd2-768-v"]["diffusers"], folder)
    config = folder / "scheduler" / "scheduler_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "prediction_type": "epsilon"}))
    assert detect_checkpoint(folder).family.id == "sd2-512"
    te = folder / "text_encoder" / "config.json"
    te.write_text(json.dumps({**json.loads(te.read_text()), "hidden_act": "quick_gelu"}))
    assert detect_checkpoint(folder).family.id == "sd1"


def test_folder_without_model_index_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no model_index.json"):
        detect_checkpoint(tmp_path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="'nope.safetensors': file not found"):
        detect_checkpoint(tmp_path / "nope.safetensors")
