"""Loading every SD family offline (single file and diffusers folder) and generating with it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from modules.models.errors import ModelLoadError
from modules.models.loader import LoadedModel, LoadOptions, load_model
from tests.fixtures.tiny_models import build_tiny_checkpoint, build_tiny_components, ldm_metadata, ldm_state_dict
from modules.models.convert.ldm import save_ldm_checkpoint

pytestmark = pytest.mark.usefixtures("no_network")
FAMILY_OF = {"sd1": "sd1", "sd1-inpaint": "sd1", "sd2-512": "sd2-512", "sd2-768-v": "sd2-768-v",
             "sdxl": "sdxl", "sdxl-refiner": "sdxl-refiner"}
PIPELINE_OF = {"sd1": "StableDiffusionPipeline", "sd1-inpaint": "StableDiffusionInpaintPipeline",
               "sd2-512": "StableDiffusionPipeline", "sd2-768-v": "StableDiffusionPipeline",
               "sdxl": "StableDiffusionXLPipeline", "sdxl-refiner": "StableDiffusionXLImg2ImgPipeline"}


def _generate(model: LoadedModel) -> Image.Image:
    kwargs: dict = {"prompt": "a photo of a red cube", "num_inference_steps": 2, "height": 64, "width": 64,
                    "output_type": "pil", "generator": torch.Generator().manual_seed(1)}
    if model.task != "txt2img":
        kwargs.update(image=Image.new("RGB", (64, 64), (120, 90, 60)), strength=1.0)
    if model.task == "inpaint":
        kwargs["mask_image"] = Image.new("L", (64, 64), 255)
    return model.pipeline(**kwargs).images[0]


@pytest.mark.parametrize("key", sorted(FAMILY_OF))
@pytest.mark.parametrize("fmt", ["single", "diffusers"])
def test_load_and_generate(tiny_checkpoints: dict, model_cache_dir: Path, key: str, fmt: str) -> None:
    path = tiny_checkpoints[key][fmt]
    model = load_model(path, LoadOptions(cache_dir=model_cache_dir))
    assert model.family.id == FAMILY_OF[key]
    assert type(model.pipeline).__name__ == PIPELINE_OF[key]
    assert model.name == (path.name if fmt == "diffusers" else path.stem)
    assert model.native_size == (64, 64)
    assert (model.latent_channels, model.vae_scale_factor) == (4, 8)
    assert model.prediction_type == model.family.prediction_type
    assert model.scheduler_config["prediction_type"] == model.prediction_type
    assert model.pipeline.scheduler.config.prediction_type == model.prediction_type
    assert model.pipeline.tokenizer_2 if key.startswith("sdxl") else model.pipeline.tokenizer
    image = _generate(model)
    assert image.size == (64, 64)


def test_single_file_uses_shipped_configs_and_header_dims(tiny_checkpoints: dict, model_cache_dir: Path) -> None:
    model = load_model(tiny_checkpoints["sdxl"]["single"], LoadOptions(cache_dir=model_cache_dir))
    unet = model.pipeline.unet.config
    assert list(unet.block_out_channels) == [8, 16, 16]  # header shapes
    assert list(unet.transformer_layers_per_block) == [1, 1, 2]  # header shapes
    assert unet.addition_time_embed_dim == 4 and unet.cross_attention_dim == 12  # header shapes
    assert unet.norm_num_groups == 4  # atelier.components metadata
    assert unet.addition_embed_type_num_heads == 64 and unet.use_linear_projection  # shipped config
    assert model.pipeline.vae.config.scaling_factor == pytest.approx(0.13025)  # shipped SDXL VAE config
    assert model.pipeline.tokenizer_2.pad_token == "!" and model.pipeline.tokenizer.pad_token == "<|endoftext|>"
    assert model.pipeline.tokenizer("a photo of sks dog").input_ids == [49406, 320, 1125, 539, 48136, 1929, 49407]
    assert type(model.pipeline.scheduler).__name__ == "EulerDiscreteScheduler"


def test_single_file_and_folder_hold_the_same_weights(tiny_checkpoints: dict, model_cache_dir: Path) -> None:
    options = LoadOptions(cache_dir=model_cache_dir)
    single = load_model(tiny_checkpoints["sd2-768-v"]["single"], options).pipeline
    folder = load_model(tiny_checkpoints["sd2-768-v"]["diffusers"], options).pipeline
    for name in ("unet", "vae", "text_encoder"):
        a, b = getattr(single, name).state_dict(), getattr(folder, name).state_dict()
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name


@pytest.mark.parametrize("family_id", ["sd1", "sdxl"])
def test_transformers5_prefixless_text_encoder_keys(tmp_path: Path, model_cache_dir: Path, family_id: str) -> None:
    normal = build_tiny_checkpoint(family_id, tmp_path, seed=3)
    prefixless = build_tiny_checkpoint(family_id, tmp_path, seed=3, te_prefixless=True)
    from modules.models.header import read_safetensors_header

    keys = read_safetensors_header(prefixless).tensors
    assert not any(".transformer.text_model." in key for key in keys)
    assert any(".transformer.encoder.layers.0." in key for key in keys)
    options = LoadOptions(cache_dir=model_cache_dir)
    a, b = load_model(normal, options).pipeline, load_model(prefixless, options).pipeline
    sa, sb = a.text_encoder.state_dict(), b.text_encoder.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    ids = a.tokenizer("a cat", return_tensors="pt").input_ids
    assert torch.equal(a.text_encoder(ids)[0], b.text_encoder(ids)[0])


def _sd2_without_prediction(tmp_path: Path, bias: float) -> Path:
    """A tiny SD 2.x file without prediction metadata whose UNet outputs the constant ``bias``."""
    components = build_tiny_components("sd2-512", seed=5)
    conv = components["unet"].conv_out
    torch.nn.init.zeros_(conv.weight)
    torch.nn.init.constant_(conv.bias, bias)
    metadata = {k: v for k, v in ldm_metadata("sd2-512", components).items() if k == "atelier.components"}
    return save_ldm_checkpoint(tmp_path / f"probe{bias}.safetensors", ldm_state_dict("sd2-512", components), metadata)


@pytest.mark.parametrize(("bias", "family_id"), [(-2.0, "sd2-768-v"), (0.0, "sd2-512")])
def test_sd2_prediction_probe_runs_the_unet(tmp_path: Path, model_cache_dir: Path, bias: float, family_id: str) -> None:
    model = load_model(_sd2_without_prediction(tmp_path, bias), LoadOptions(cache_dir=model_cache_dir))
    assert model.family.id == family_id
    assert model.variant["prediction_source"] == "unet_probe"
    assert model.pipeline.scheduler.config.prediction_type == model.family.prediction_type


def test_sd2_override_skips_the_probe(tmp_path: Path, model_cache_dir: Path) -> None:
    path = _sd2_without_prediction(tmp_path, -2.0)
    model = load_model(path, LoadOptions(cache_dir=model_cache_dir, prediction_type="epsilon"))
    assert (model.family.id, model.variant["prediction_source"]) == ("sd2-512", "override")


def test_task_pipelines_share_the_loaded_modules(tiny_checkpoints: dict, model_cache_dir: Path) -> None:
    from modules.models.pipeline_build import pipeline_for_task

    model = load_model(tiny_checkpoints["sd1"]["single"], LoadOptions(cache_dir=model_cache_dir))
    img2img = pipeline_for_task(model.pipeline, model.family, "img2img")
    assert type(img2img).__name__ == "StableDiffusionImg2ImgPipeline" and img2img.unet is model.pipeline.unet
    assert pipeline_for_task(model.pipeline, model.family, "txt2img") is model.pipeline
    refiner = load_model(tiny_checkpoints["sdxl-refiner"]["single"], LoadOptions(cache_dir=model_cache_dir))
    assert refiner.task == "img2img" and not refiner.family.supports_txt2img
    with pytest.raises(ValueError, match="no txt2img pipeline"):
        pipeline_for_task(refiner.pipeline, refiner.family, "txt2img")


def test_native_size_from_modelspec_resolution(tmp_path: Path, model_cache_dir: Path) -> None:
    components = build_tiny_components("sd1")
    metadata = {**ldm_metadata("sd1", components), "modelspec.resolution": "96x64"}
    path = save_ldm_checkpoint(tmp_path / "wide.safetensors", ldm_state_dict("sd1", components), metadata)
    assert load_model(path, LoadOptions(cache_dir=model_cache_dir)).native_size == (96, 64)


def test_dtype_option_casts_components(tiny_checkpoints: dict, model_cache_dir: Path) -> None:
    model = load_model(tiny_checkpoints["sd1"]["single"], LoadOptions(cache_dir=model_cache_dir, dtype="bfloat16"))
    assert {p.dtype for p in model.pipeline.unet.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in model.pipeline.text_encoder.parameters()} == {torch.bfloat16}


def test_embedded_style_metadata_overrides_family_values(tmp_path: Path, model_cache_dir: Path) -> None:
    components = build_tiny_components("sd1")
    metadata = json.loads(ldm_metadata("sd1", components)["atelier.components"])
    assert "block_out_channels" not in metadata["unet"]  # dims come from shapes, not metadata
    assert metadata["unet"]["attention_head_dim"] == 2 and metadata["text_encoder"] == {"num_attention_heads": 2}


def test_missing_metadata_for_unusual_dims_is_a_clear_error(tmp_path: Path, model_cache_dir: Path) -> None:
    components = build_tiny_components("sd1")
    path = save_ldm_checkpoint(tmp_path / "bare.safetensors", ldm_state_dict("sd1", components), {})
    with pytest.raises(ModelLoadError, match=r"'bare\.safetensors'.*norm_num_groups=32"):
        load_model(path, LoadOptions(cache_dir=model_cache_dir))


def _sd1_with_markers(tmp_path: Path, markers: tuple[str, ...]) -> Path:
    components = build_tiny_components("sd1", seed=6)
    state = {**ldm_state_dict("sd1", components), **{key: torch.empty(0) for key in markers}}
    return save_ldm_checkpoint(tmp_path / "ztsnr.safetensors", state, ldm_metadata("sd1", components))


def test_zero_terminal_snr_checkpoint_samples_from_pure_noise(tmp_path: Path, model_cache_dir: Path) -> None:
    from modules.generation.sampling.samplers import SamplerNotSupportedError, resolve_sampler

    model = load_model(_sd1_with_markers(tmp_path, ("v_pred", "ztsnr")), LoadOptions(cache_dir=model_cache_dir))
    assert model.prediction_type == "v_prediction" and model.variant["zero_terminal_snr"]
    scheduler = resolve_sampler("Euler").build(model.scheduler_config, model.prediction_type)
    scheduler.set_timesteps(10)
    assert scheduler.config.rescale_betas_zero_snr and int(scheduler.timesteps[0]) == 999
    with pytest.raises(SamplerNotSupportedError, match="zero-terminal-SNR"):
        resolve_sampler("Heun").build(model.scheduler_config, model.prediction_type)
    assert _generate(model).size == (64, 64)


def test_zero_terminal_snr_marker_without_v_prediction_is_refused(tmp_path: Path, model_cache_dir: Path) -> None:
    path = _sd1_with_markers(tmp_path, ("ztsnr",))
    with pytest.raises(ModelLoadError, match="zero-terminal-SNR"):
        load_model(path, LoadOptions(cache_dir=model_cache_dir))
