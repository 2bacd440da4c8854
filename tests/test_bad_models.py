"""Bad model files fail with ModelLoadError naming the file and the reason."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from modules.models.convert.ldm import diffusers_to_ldm
from modules.models.detect import detect_checkpoint
from modules.models.errors import ModelLoadError
from modules.models.loader import LoadOptions, load_model
from tests.fixtures.tiny_models import build_tiny_components, ldm_state_dict, tiny_configs

pytestmark = pytest.mark.usefixtures("no_network")


@pytest.fixture
def options(model_cache_dir: Path) -> LoadOptions:
    return LoadOptions(cache_dir=model_cache_dir)


@pytest.fixture
def sd1_file(tiny_checkpoints: dict, tmp_path: Path) -> Path:
    return Path(shutil.copy(tiny_checkpoints["sd1"]["single"], tmp_path / "model.safetensors"))


def _rewrite(path: Path, edit: Callable[[dict[str, torch.Tensor]], object]) -> Path:
    """Apply ``edit`` to the file's tensors and write them back with the same metadata."""
    state = load_file(str(path))
    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
    edit(state)
    save_file(state, str(path), metadata=metadata)
    return path


def test_truncated_file(sd1_file: Path, options: LoadOptions) -> None:
    data = sd1_file.read_bytes()
    sd1_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match=r"^cannot load model 'model\.safetensors': file is truncated"):
        detect_checkpoint(sd1_file)
    with pytest.raises(ModelLoadError, match="truncated"):
        load_model(sd1_file, options)


def test_corrupt_header(sd1_file: Path, options: LoadOptions) -> None:
    data = bytearray(sd1_file.read_bytes())
    data[8:40] = b"#" * 32
    sd1_file.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match=r"'model\.safetensors': corrupt safetensors header"):
        load_model(sd1_file, options)


def test_unknown_architecture(tmp_path: Path, options: LoadOptions) -> None:
    classifier = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Flatten(), torch.nn.Linear(8, 10))
    path = tmp_path / "classifier.safetensors"
    save_file(classifier.state_dict(), str(path))
    with pytest.raises(ModelLoadError, match=r"'classifier\.safetensors': unknown architecture"):
        load_model(path, options)


def test_missing_and_unexpected_tensors(sd1_file: Path, tmp_path: Path, options: LoadOptions) -> None:
    other = Path(shutil.copy(sd1_file, tmp_path / "extra.safetensors"))
    _rewrite(sd1_file, lambda s: s.pop("model.diffusion_model.input_blocks.1.1.proj_out.bias"))
    with pytest.raises(ModelLoadError, match=r"'model\.safetensors': UNet is missing 1 tensor.*proj_out\.bias"):
        load_model(sd1_file, options)
    _rewrite(other, lambda s: s.update({"first_stage_model.encoder.extra.weight": torch.zeros(2)}))
    with pytest.raises(ModelLoadError, match=r"'extra\.safetensors': VAE has 1 unexpected tensor"):
        load_model(other, options)


def test_tensor_with_wrong_shape(sd1_file: Path, options: LoadOptions) -> None:
    key = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight"
    _rewrite(sd1_file, lambda s: s.update({key: torch.zeros(8, 5)}))
    with pytest.raises(ModelLoadError, match=r"'model\.safetensors': UNet weights do not fit its config"):
        load_model(sd1_file, options)


def test_text_encoder_from_another_family(sd1_file: Path, options: LoadOptions) -> None:
    """An SD 1.x file whose text encoder is wider than its UNet's cross-attention (spliced component)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    config = {k: v for k, v in tiny_configs("sd1")["text_encoder"].items() if k not in ("architectures", "torch_dtype")}
    wide = CLIPTextModel(CLIPTextConfig(**{**config, "hidden_size": 16}))
    te = {"cond_stage_model.transformer.text_model." + k: v for k, v in wide.state_dict().items()}

    def splice(state: dict) -> None:
        for key in [k for k in state if k.startswith("cond_stage_model.")]:
            del state[key]
        state.update(te)

    _rewrite(sd1_file, splice)
    with pytest.raises(ModelLoadError, match=r"'model\.safetensors': UNet expects text features of width 8 .* 16"):
        load_model(sd1_file, options)


def _bare_vae(tmp_path: Path, latent_channels: int, seed: int) -> tuple[Path, dict]:
    from diffusers import AutoencoderKL

    components = build_tiny_components("sd1")
    torch.manual_seed(seed)
    vae = AutoencoderKL.from_config({**dict(components["vae"].config), "latent_channels": latent_channels})
    state = diffusers_to_ldm(components["unet"].state_dict(), vae.state_dict(), components["text_encoder"].state_dict(),
                             unet_config=components["unet"].config, family="sd1")
    bare = {k.removeprefix("first_stage_model."): v for k, v in state.items() if k.startswith("first_stage_model.")}
    path = tmp_path / f"vae{latent_channels}.safetensors"
    save_file(bare, str(path), metadata={"atelier.components": json.dumps({"vae": {"norm_num_groups": 4}})})
    return path, vae.state_dict()


def test_external_vae_replaces_the_checkpoints(tiny_checkpoints: dict, tmp_path: Path, model_cache_dir: Path) -> None:
    path, weights = _bare_vae(tmp_path, 4, seed=7)
    model = load_model(tiny_checkpoints["sd1"]["single"], LoadOptions(cache_dir=model_cache_dir, vae=path))
    loaded = model.pipeline.vae.state_dict()
    assert all(torch.equal(loaded[k], weights[k]) for k in weights)


def test_external_vae_from_another_family(tiny_checkpoints: dict, tmp_path: Path, model_cache_dir: Path) -> None:
    path, _ = _bare_vae(tmp_path, 16, seed=7)  # FLUX-style 16-channel latent space
    with pytest.raises(ModelLoadError, match=r"'vae16\.safetensors': VAE has 16 latent channels"):
        load_model(tiny_checkpoints["sd1"]["single"], LoadOptions(cache_dir=model_cache_dir, vae=path))


def test_external_file_that_is_not_a_vae(tiny_checkpoints: dict, tmp_path: Path, model_cache_dir: Path) -> None:
    path = tmp_path / "lora.safetensors"
    save_file({"lora_unet_x.lora_down.weight": torch.zeros(2, 2)}, str(path))
    with pytest.raises(ModelLoadError, match=r"'lora\.safetensors': not a VAE"):
        load_model(tiny_checkpoints["sd1"]["single"], LoadOptions(cache_dir=model_cache_dir, vae=path))


def test_malformed_components_metadata(sd1_file: Path, options: LoadOptions) -> None:
    save_file(load_file(str(sd1_file)), str(sd1_file), metadata={"atelier.components": '{"unet": ['})
    with pytest.raises(ModelLoadError, match=r"'model\.safetensors': metadata 'atelier.components' is not valid JSON"):
        load_model(sd1_file, options)


def _pickle_checkpoint(tmp_path: Path) -> tuple[Path, dict]:
    """A legacy ``.ckpt`` (no metadata possible) whose dims need no ``atelier.components``:
    SD 1.x norm groups (32), 8 heads and a 64-wide (one-head) text encoder, with a small vocabulary."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    configs = tiny_configs("sd1")
    torch.manual_seed(2)
    components = {
        "unet": UNet2DConditionModel.from_config({
            **configs["unet"], "block_out_channels": [32, 32, 64, 64], "layers_per_block": 1,
            "norm_num_groups": 32, "attention_head_dim": 8, "cross_attention_dim": 64}),
        "vae": AutoencoderKL.from_config({**configs["vae"], "block_out_channels": [32, 32, 32, 32],
                                          "layers_per_block": 1, "norm_num_groups": 32}),
        "text_encoder": CLIPTextModel(CLIPTextConfig(
            vocab_size=1000, hidden_size=64, intermediate_size=64, num_hidden_layers=1, num_attention_heads=1,
            hidden_act="quick_gelu")),
    }
    path = tmp_path / "legacy.ckpt"
    torch.save({"state_dict": ldm_state_dict("sd1", components), "global_step": 10}, str(path))
    return path, components


def test_pickle_is_refused_by_default(tmp_path: Path, options: LoadOptions) -> None:
    path, _ = _pickle_checkpoint(tmp_path)
    with pytest.raises(ModelLoadError, match=r"'legacy\.ckpt': pickle checkpoints can run code.*--allow-pickle"):
        detect_checkpoint(path)
    with pytest.raises(ModelLoadError, match="--allow-pickle"):
        load_model(path, options)


def test_pickle_opt_in_loads_with_weights_only(tmp_path: Path, model_cache_dir: Path) -> None:
    path, components = _pickle_checkpoint(tmp_path)
    assert detect_checkpoint(path, allow_pickle=True).family.id == "sd1"
    model = load_model(path, LoadOptions(cache_dir=model_cache_dir, allow_pickle=True))
    for name, original in components.items():
        want, got = original.state_dict(), getattr(model.pipeline, name).state_dict()
        assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want), name


class _Exploit:
    def __reduce__(self) -> tuple:
        return (print, ("pickle code ran",))


def test_pickle_with_code_is_rejected_even_when_allowed(
    tmp_path: Path, options: LoadOptions, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": _Exploit()}, str(path))
    with pytest.raises(ModelLoadError, match=r"'evil\.ckpt': pickle file rejected by the weights-only loader"):
        load_model(path, LoadOptions(cache_dir=options.cache_dir, allow_pickle=True))
    assert "pickle code ran" not in capsys.readouterr().out


def test_garbage_pickle_file(tmp_path: Path, options: LoadOptions) -> None:
    path = tmp_path / "junk.pt"
    path.write_bytes(b"not a pickle at all")
    with pytest.raises(ModelLoadError, match=r"'junk\.pt': pickle file rejected"):
        detect_checkpoint(path, allow_pickle=True)


def test_diffusers_folder_with_pickle_weights(tiny_checkpoints: dict, tmp_path: Path, options: LoadOptions) -> None:
    folder = Path(shutil.copytree(tiny_checkpoints["sd1"]["diffusers"], tmp_path / "folder"))
    weights = next((folder / "unet").glob("*.safetensors"))
    torch.save(load_file(str(weights)), str(folder / "unet" / "diffusion_pytorch_model.bin"))
    weights.unlink()
    with pytest.raises(ModelLoadError, match=r"'folder': unet/ holds only pickle weights"):
        load_model(folder, options)
