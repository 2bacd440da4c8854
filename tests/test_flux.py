"""FLUX.1 dev/schnell offline (issue #2): detection, every file layout, generation, clear errors.

Tiny random-weight models (tests/fixtures/flux_models.py) go through the same code path as real
files; real FLUX.1 widths are checked with header-only sparse files (no weights written).
"""

from __future__ import annotations

import json
import shutil
import socket
import struct
from pathlib import Path

import pytest
import torch

from modules.models import flux_discovery, flux_loader
from modules.models.convert import bfl
from modules.models.errors import ModelLoadError
from modules.models.families import REPO_ROOT, get_family
from modules.models.flux_components import component_config
from modules.models.flux_source import inspect_flux_file
from tests.fixtures.flux_models import T5_DIM, build_tiny_flux, write_sd_vae_decoy

FAMILIES_DIR = REPO_ROOT / "configs" / "families"
LAYOUTS = ("bfl", "bfl-prefixed", "all-in-one", "diffusers")


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def offline(monkeypatch):
    """No hub, no sockets: any connection attempt fails the test."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _options(tmp_path: Path):
    from modules.models.loader import LoadOptions

    return LoadOptions(device="cpu", dtype="float32", allow_pickle=False, prediction_type=None,
                       cache_dir=tmp_path / "cache")


def _detect(path: Path):
    from modules.models.detect import detect_checkpoint

    return detect_checkpoint(path)


def _load(path: Path, tmp_path: Path):
    return flux_loader.load_flux(path, _detect(path), _options(tmp_path))


def _generate(pipeline, variant: str, *, steps: int = 2, max_sequence_length: int = 32):
    return pipeline(
        "a red fox in the snow", height=64, width=64, num_inference_steps=steps,
        guidance_scale=3.5 if variant == "dev" else 0.0, max_sequence_length=max_sequence_length,
        generator=torch.Generator().manual_seed(0), output_type="np",
    ).images


def _write_header_only(path: Path, shapes: dict[str, tuple[int, ...]], dtype: str = "BF16",
                       metadata: dict[str, str] | None = None) -> None:
    """A valid safetensors file whose data section is a sparse hole (real-size headers, no disk)."""
    itemsize = {"BF16": 2, "F16": 2, "F32": 4, "F8_E4M3": 1}[dtype]
    header: dict[str, object] = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for key, shape in shapes.items():
        size = itemsize * int(torch.Size(shape).numel())
        header[key] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        handle.write(struct.pack("<Q", len(raw)) + raw)
        handle.truncate(8 + len(raw) + offset)


def _real_shapes(variant: str) -> dict[str, dict[str, tuple[int, ...]]]:
    """On-disk key shapes of the real FLUX.1 files, built on the meta device from the shipped configs."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    folder = FAMILIES_DIR / f"flux-{variant}"
    load = lambda name: json.loads((folder / name / "config.json").read_text())  # noqa: E731
    with init_empty_weights():
        transformer = FluxTransformer2DModel.from_config(load("transformer"))
        vae = AutoencoderKL.from_config(load("vae"))
        clip = CLIPTextModel(CLIPTextConfig.from_dict(load("text_encoder")))
        t5 = T5EncoderModel(T5Config.from_dict(load("text_encoder_2")))
    meta = lambda m: dict(m.state_dict())  # noqa: E731
    shapes = lambda sd: {k: tuple(v.shape) for k, v in sd.items()}  # noqa: E731
    return {
        "transformer": shapes(bfl.transformer_to_bfl(meta(transformer))),
        "vae": shapes(bfl.vae_to_ldm(meta(vae))),
        "text_encoder": shapes(bfl.clip_to_ldm(meta(clip))),
        "text_encoder_2": shapes(bfl.t5_to_disk(meta(t5))),
    }


# --------------------------------------------------------------------------- shipped configs


def test_shipped_configs_are_the_published_flux_values():
    dev, schnell = (json.loads((FAMILIES_DIR / f"flux-{v}" / "scheduler" / "scheduler_config.json").read_text())
                    for v in ("dev", "schnell"))
    assert dev["_class_name"] == "FlowMatchEulerDiscreteScheduler"
    assert (dev["shift"], dev["use_dynamic_shifting"], dev["base_shift"], dev["max_shift"]) == (3.0, True, 0.5, 1.15)
    assert (dev["base_image_seq_len"], dev["max_image_seq_len"]) == (256, 4096)
    assert (schnell["shift"], schnell["use_dynamic_shifting"]) == (1.0, False)
    for variant in ("dev", "schnell"):
        folder = FAMILIES_DIR / f"flux-{variant}"
        transformer = json.loads((folder / "transformer" / "config.json").read_text())
        assert transformer["guidance_embeds"] is (variant == "dev")
        assert (transformer["num_layers"], transformer["num_single_layers"]) == (19, 38)
        assert transformer["axes_dims_rope"] == [16, 56, 56]
        vae = json.loads((folder / "vae" / "config.json").read_text())
        assert (vae["latent_channels"], vae["scaling_factor"], vae["shift_factor"]) == (16, 0.3611, 0.1159)
        assert vae["use_quant_conv"] is False and vae["use_post_quant_conv"] is False
        t5 = json.loads((folder / "text_encoder_2" / "config.json").read_text())
        assert (t5["d_model"], t5["d_ff"], t5["num_layers"], t5["num_heads"], t5["vocab_size"]) == (
            4096, 10240, 24, 64, 32128)
        assert json.loads((folder / "model_index.json").read_text())["_class_name"] == "FluxPipeline"


def test_vendored_t5_tokenizer_is_the_t5_vocabulary(offline):
    from transformers import T5TokenizerFast

    tokenizer = T5TokenizerFast.from_pretrained(str(flux_loader.T5_TOKENIZER_DIR), local_files_only=True)
    assert len(tokenizer) == 32100
    assert tokenizer("Hello world, a photo of a cat").input_ids == [8774, 296, 6, 3, 9, 1202, 13, 3, 9, 1712, 1]
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id) == (0, 1)
    assert flux_loader.t5_tokenizer_dir(get_family("flux-schnell")) == flux_loader.T5_TOKENIZER_DIR


# --------------------------------------------------------------------------- key layouts


def test_transformer_conversion_equals_diffusers_on_flux1_widths():
    """Our width-agnostic converter gives exactly what diffusers' own (3072-wide only) converter gives."""
    from accelerate import init_empty_weights
    from diffusers import FluxTransformer2DModel
    from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers

    config = json.loads((FAMILIES_DIR / "flux-dev" / "transformer" / "config.json").read_text())
    config.update(num_layers=2, num_single_layers=2)
    with init_empty_weights():
        model = FluxTransformer2DModel.from_config(config)
    generator = torch.Generator().manual_seed(0)
    # one column per row keeps real row counts (the only dimension the conversion touches) cheap
    original = {k: torch.randn(v.shape[0], 1, generator=generator) for k, v in model.state_dict().items()}
    on_disk = bfl.transformer_to_bfl(original)
    assert "double_blocks.0.img_attn.qkv.weight" in on_disk and "single_blocks.1.linear1.weight" in on_disk
    ours = bfl.transformer_to_diffusers(on_disk)
    theirs = convert_flux_transformer_checkpoint_to_diffusers(
        {bfl.TRANSFORMER_PREFIX + k: v.clone() for k, v in on_disk.items()})
    assert ours.keys() == theirs.keys() == original.keys()
    assert all(torch.equal(ours[k], theirs[k]) and torch.equal(ours[k], original[k]) for k in ours)


def test_vae_export_round_trips_through_diffusers_converter():
    from tests.fixtures.flux_models import tiny_vae

    state = tiny_vae().state_dict()
    ldm = bfl.vae_to_ldm(state)
    assert "decoder.up.3.upsample.conv.weight" in ldm and ldm["encoder.mid.attn_1.q.weight"].ndim == 4
    for prefixed in (ldm, bfl.add_prefix(ldm, "vae."), bfl.add_prefix(ldm, "first_stage_model.")):
        back = bfl.vae_to_diffusers(prefixed)
        assert back.keys() == state.keys()
        assert all(torch.equal(back[k], state[k]) for k in state)


def test_unknown_transformer_key_is_reported():
    with pytest.raises(ValueError, match="double_blocks.0.img_attn.lora_up"):
        bfl.transformer_to_diffusers({"img_in.weight": torch.zeros(4, 2),
                                      "double_blocks.0.img_attn.lora_up.weight": torch.zeros(1)})


# --------------------------------------------------------------------------- detection


@pytest.mark.parametrize("layout", LAYOUTS)
def test_detection_tells_dev_from_schnell_by_guidance_in(tmp_path, layout):
    from modules.models.detect import detect_checkpoint

    for variant in ("dev", "schnell"):
        path = build_tiny_flux(variant, tmp_path / variant / "models", fmt=layout)
        assert detect_checkpoint(path).family.id == f"flux-{variant}"
        if layout != "diffusers":
            assert inspect_flux_file(path).variant == variant


def test_inspect_reports_embedded_and_missing_components(tmp_path):
    bare = inspect_flux_file(build_tiny_flux("dev", tmp_path / "a" / "models", fmt="bfl"))
    assert bare.missing == ("vae", "text_encoder", "text_encoder_2")
    aio = inspect_flux_file(build_tiny_flux("dev", tmp_path / "b" / "models", fmt="all-in-one"))
    assert aio.missing == () and aio.transformer_layout == "bfl"


# --------------------------------------------------------------------------- loading and generation


def _weights(pipeline) -> dict[str, torch.Tensor]:
    parts = ("transformer", "vae", "text_encoder", "text_encoder_2")
    return {f"{p}.{k}": v for p in parts for k, v in getattr(pipeline, p).state_dict().items()}


@pytest.mark.parametrize("variant", ["dev", "schnell"])
def test_every_layout_loads_offline_and_gives_the_same_image(tmp_path, offline, variant):
    images, weights = {}, {}
    for layout in LAYOUTS:
        path = build_tiny_flux(variant, tmp_path / layout / "models", fmt=layout)
        model = _load(path, tmp_path / layout)
        assert model.family.id == f"flux-{variant}"
        assert (model.prediction_type, model.latent_channels, model.vae_scale_factor) == ("flow", 16, 8)
        assert model.native_size == (1024, 1024)
        assert model.scheduler_config["use_dynamic_shifting"] is (variant == "dev")
        assert type(model.pipeline).__name__ == "FluxPipeline"
        assert model.pipeline.transformer.config.guidance_embeds is (variant == "dev")
        weights[layout] = _weights(model.pipeline)
        images[layout] = _generate(model.pipeline, variant)
        assert images[layout].shape == (1, 64, 64, 3) and torch.isfinite(torch.from_numpy(images[layout])).all()
    # the same weights saved in four layouts load bit-identically, so the picture is the same
    # (up to float summation order, which depends on memory alignment)
    for layout in LAYOUTS[1:]:
        assert weights[layout].keys() == weights["bfl"].keys()
        assert all(torch.equal(weights[layout][k], weights["bfl"][k]) for k in weights["bfl"]), layout
        assert abs(images[layout] - images["bfl"]).max() < 1e-4, layout


def test_schnell_runs_one_to_four_steps(tmp_path, offline):
    model = _load(build_tiny_flux("schnell", tmp_path / "models", fmt="all-in-one"), tmp_path)
    for steps in (1, 4):
        assert _generate(model.pipeline, "schnell", steps=steps).shape == (1, 64, 64, 3)


def test_max_sequence_length_is_honoured(tmp_path, offline):
    model = _load(build_tiny_flux("dev", tmp_path / "models", fmt="bfl"), tmp_path)
    for length in (16, 77):
        embeds, pooled, _ = model.pipeline.encode_prompt(
            "a lighthouse at dusk", prompt_2=None, max_sequence_length=length, device=torch.device("cpu"))
        assert tuple(embeds.shape) == (1, length, T5_DIM)
        assert tuple(pooled.shape) == (1, 32)
    assert _generate(model.pipeline, "dev", max_sequence_length=16).shape == (1, 64, 64, 3)


def test_components_are_found_by_header_not_by_name(tmp_path, offline):
    models = tmp_path / "models"
    path = build_tiny_flux("dev", models, fmt="bfl")
    text = models / "text_encoder"
    (text / "encoder-a.safetensors").rename(text / "clip_l.safetensors")  # really the T5
    (text / "encoder-b.safetensors").rename(text / "t5xxl_fp16.safetensors")  # really the CLIP-L
    write_sd_vae_decoy(models)  # 4-channel VAE sorted first: must be skipped
    model = _load(path, tmp_path)
    assert type(model.pipeline.text_encoder).__name__ == "CLIPTextModel"
    assert type(model.pipeline.text_encoder_2).__name__ == "T5EncoderModel"
    assert model.pipeline.vae.config.latent_channels == 16


def test_missing_components_error_names_the_files_and_folders(tmp_path, offline):
    models = tmp_path / "models"
    path = build_tiny_flux("schnell", models, fmt="bfl-prefixed")
    shutil.rmtree(models / "text_encoder")
    with pytest.raises(ModelLoadError) as err:
        _load(path, tmp_path)
    message = str(err.value)
    assert "\n" not in message and path.name in message
    assert "CLIP-L text encoder (clip_l.safetensors" in message
    assert "T5-XXL encoder (t5xxl_fp16.safetensors" in message
    assert str((models / "text_encoder").resolve()) in message
    assert "FLUX VAE" not in message

    (models / "VAE" / "flux-ae.safetensors").unlink()
    write_sd_vae_decoy(models)  # a VAE of the wrong kind does not count
    with pytest.raises(ModelLoadError, match=r"FLUX VAE \(ae\.safetensors, 16 latent channels\) in .*VAE"):
        _load(path, tmp_path)


def test_what_shapes_cannot_tell_must_come_from_metadata(tmp_path, offline):
    from safetensors.torch import load_file, save_file

    models = tmp_path / "models"
    path = build_tiny_flux("dev", models, fmt="bfl")
    save_file(load_file(str(path)), path)  # same tensors, no atelier.components
    with pytest.raises(ModelLoadError, match=r"RoPE axes \[16, 56, 56\] do not add up to the head size 16"):
        _load(path, tmp_path)


# --------------------------------------------------------------------------- real FLUX.1 widths


@pytest.mark.parametrize("variant", ["dev", "schnell"])
def test_real_flux1_headers_give_the_published_configs(tmp_path, variant):
    shapes = _real_shapes(variant)
    checkpoint = tmp_path / "models" / "Stable-diffusion" / f"flux1-{variant}.safetensors"
    _write_header_only(checkpoint, {bfl.TRANSFORMER_PREFIX + k: v for k, v in shapes["transformer"].items()})
    _write_header_only(tmp_path / "models" / "text_encoder" / "x1.safetensors", shapes["text_encoder"])
    _write_header_only(tmp_path / "models" / "text_encoder" / "x2.safetensors", shapes["text_encoder_2"], "F8_E4M3")
    _write_header_only(tmp_path / "models" / "text_encoder" / "x3.safetensors", shapes["text_encoder_2"], "F16")
    _write_header_only(tmp_path / "models" / "VAE" / "ae.safetensors", shapes["vae"])

    family = get_family(f"flux-{variant}")
    flux = inspect_flux_file(checkpoint)
    assert (flux.variant, flux.missing) == (variant, ("vae", "text_encoder", "text_encoder_2"))
    shipped = lambda name: json.loads((family.config_path / name / "config.json").read_text())  # noqa: E731
    config = component_config(flux.sources["transformer"], family)
    assert {k: config[k] for k in shipped("transformer") if not k.startswith("_")} == {
        k: v for k, v in shipped("transformer").items() if not k.startswith("_")}

    text_dirs, vae_dirs = flux_discovery.component_dirs(checkpoint, _options(tmp_path))
    needs = flux_discovery.CompanionNeeds.from_transformer_config(config)
    found, _ = flux_discovery.find_companions(flux.missing, needs, text_dirs, vae_dirs)
    assert {c: s.path.name for c, s in found.items()} == {
        "text_encoder": "x1.safetensors", "text_encoder_2": "x3.safetensors", "vae": "ae.safetensors"}
    for component in ("vae", "text_encoder", "text_encoder_2"):
        inferred = component_config(found[component], family)
        for key, value in shipped(component).items():
            assert inferred[key] == value, (component, key)

    message = flux_discovery.missing_message(["text_encoder", "text_encoder_2", "vae"], needs, text_dirs, vae_dirs, [])
    assert "768-wide" in message and "4096-wide" in message and "16 latent channels" in message


def test_studio_loader_dispatches_flux_files(tmp_path, offline):
    from modules.models.loader import load_model

    model = load_model(build_tiny_flux("schnell", tmp_path / "models", fmt="bfl"), _options(tmp_path))
    assert model.family.id == "flux-schnell" and model.variant["prediction_type"] == "flow"
    assert model.configs["transformer"]["axes_dims_rope"] == [4, 6, 6]
    assert model.configs["text_encoder"]["num_attention_heads"] == 2


def test_selected_vae_file_replaces_the_lookup(tmp_path, offline):
    from dataclasses import replace

    models = tmp_path / "models"
    path = build_tiny_flux("dev", models, fmt="bfl")
    chosen = tmp_path / "my-flux-vae.safetensors"
    (models / "VAE" / "flux-ae.safetensors").rename(chosen)
    model = flux_loader.load_flux(path, _detect(path), replace(_options(tmp_path), vae=chosen))
    assert model.pipeline.vae.config.latent_channels == 16
    decoy = write_sd_vae_decoy(models)
    with pytest.raises(ModelLoadError, match="the selected VAE has 4 latent channels; FLUX needs 16"):
        flux_loader.load_flux(path, _detect(path), replace(_options(tmp_path), vae=decoy))
