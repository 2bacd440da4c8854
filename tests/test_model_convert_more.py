"""More conversions (issue 28.4): a diffusers folder -> one LDM-layout file -> a diffusers folder again, each
loaded by the studio's loader with bit-identical networks and the same UNet output; LoRA kohya <-> PEFT
giving the same UNet (and text encoder) output, with A1111's lora_te_text_model_ names under transformers 5;
the convert_model / convert_lora jobs in a studio."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from modules.generation.addons.lora import LoraUse, apply_loras
from modules.generation.addons.lora_convert import LoraError, parse_lora
from modules.models.convert.formats import folder_to_single_file, single_file_to_folder
from modules.models.convert.lora_format import convert_lora_state, guess_family
from modules.models.convert.pickle_to_safetensors import ConversionError
from modules.models.loader import LoadOptions, load_model
from tests.fixtures.tiny_models import build_tiny_components, tiny_pipeline
from tests.fixtures.tiny_networks import kohya_lora_state, peft_lora_state

pytestmark = pytest.mark.usefixtures("no_network")
NETWORKS = ("unet", "vae", "text_encoder")


def _unet_output(pipe) -> torch.Tensor:
    gen = torch.Generator().manual_seed(5)
    unet = pipe.unet
    size = unet.config.sample_size
    sample = torch.randn(1, unet.config.in_channels, size, size, generator=gen, dtype=unet.dtype)
    context = torch.randn(1, 7, unet.config.cross_attention_dim, generator=gen, dtype=unet.dtype)
    with torch.no_grad():
        return unet(sample, torch.tensor([10]), encoder_hidden_states=context,
                    added_cond_kwargs=_added_cond(pipe)).sample


def _te_output(pipe) -> torch.Tensor:
    with torch.no_grad():
        return pipe.text_encoder(torch.tensor([[0, 5, 9, 2]])).last_hidden_state


def _added_cond(pipe) -> dict | None:
    """SDXL's extra UNet inputs (pooled text embeds and size ids) for a tiny model."""
    if getattr(pipe, "text_encoder_2", None) is None:
        return None
    config = pipe.unet.config
    gen = torch.Generator().manual_seed(6)
    pooled = config.projection_class_embeddings_input_dim - 6 * config.addition_time_embed_dim
    return {"text_embeds": torch.randn(1, pooled, generator=gen), "time_ids": torch.tensor([[64., 64, 0, 0, 64, 64]])}


def _same_networks(a, b) -> None:
    for name in NETWORKS:
        sa, sb = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        assert sa.keys() == sb.keys(), name
        assert all(sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]) for k in sa), name


@pytest.mark.parametrize("family_id", ["sd1", "sd2-768-v", "sdxl"])
def test_diffusers_to_single_file_and_back_is_exact(tiny_model, model_cache_dir: Path, tmp_path: Path,
                                                    family_id: str) -> None:
    folder = tiny_model(family_id, fmt="diffusers")
    options = LoadOptions(cache_dir=model_cache_dir)
    original = load_model(folder, options)
    single = folder_to_single_file(folder, tmp_path / "single.safetensors", cache_dir=model_cache_dir)
    with safe_open(str(single), framework="pt") as handle:
        keys = list(handle.keys())
        metadata = handle.metadata()
    assert any(k.startswith("model.diffusion_model.") for k in keys)  # the original LDM layout
    te_prefix = {"sd1": "cond_stage_model.transformer.text_model.", "sd2-768-v": "cond_stage_model.model.transformer.",
                 "sdxl": "conditioner.embedders.0.transformer.text_model."}[family_id]
    assert any(k.startswith(te_prefix) for k in keys)
    assert metadata["atelier_operation"] == "to_single_file"
    from modules.models.header import read_safetensors_header

    assert {t.dtype for t in read_safetensors_header(single).tensors.values()} == {"F16"}  # the folder's dtype kept
    from_single = load_model(single, options)
    assert from_single.family.id == original.family.id == family_id
    assert from_single.prediction_type == original.prediction_type
    _same_networks(original.pipeline, from_single.pipeline)
    assert torch.equal(_unet_output(original.pipeline), _unet_output(from_single.pipeline))
    back = single_file_to_folder(single, tmp_path / "back", cache_dir=model_cache_dir)
    assert (back / "model_index.json").is_file() and not list(tmp_path.glob(".back.*"))
    _same_networks(load_model(back, options).pipeline, load_model(folder, options).pipeline)


def test_broken_and_flux_folders_are_refused(tmp_path: Path, model_cache_dir: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model_index.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ConversionError, match="cannot read broken"):
        folder_to_single_file(broken, tmp_path / "x.safetensors", cache_dir=model_cache_dir)
    assert not (tmp_path / "x.safetensors").exists()

    from tests.fixtures.flux_models import build_tiny_flux

    flux = build_tiny_flux("schnell", tmp_path / "flux" / "models", fmt="diffusers")
    with pytest.raises(ConversionError, match="FLUX.*only SD 1.x, SD 2.x and SDXL"):
        folder_to_single_file(flux, tmp_path / "flux.safetensors", cache_dir=model_cache_dir)
    assert not (tmp_path / "flux.safetensors").exists()


@pytest.fixture(scope="module")
def sd1(model_cache_dir: Path):
    pipe = tiny_pipeline("sd1", build_tiny_components("sd1"), model_cache_dir)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def sdxl(model_cache_dir: Path):
    pipe = tiny_pipeline("sdxl", build_tiny_components("sdxl"), model_cache_dir)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_sdxl_lora_with_sgm_names_round_trips(sdxl) -> None:
    kohya = kohya_lora_state(sdxl, rank=2, alpha=2.0, sgm_names=True)
    peft, meta, family = convert_lora_state(kohya, {}, to="peft")
    assert family == "sdxl" and any(k.startswith("text_encoder_2.") for k in peft)
    assert any(k.startswith("unet.down_blocks.") for k in peft)  # SGM names mapped to diffusers module paths
    back, back_meta, _ = convert_lora_state(peft, meta, to="kohya")
    assert any(k.startswith("lora_te1_text_model_") for k in back) and any(k.startswith("lora_te2_text_model_")
                                                                         for k in back)
    expected = _outputs_with(sdxl, kohya, {})
    for state, metadata in ((peft, meta), (back, back_meta)):
        got = _outputs_with(sdxl, state, metadata)
        assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


def _outputs_with(pipe, state, metadata) -> tuple[torch.Tensor, torch.Tensor]:
    use = LoraUse("x", Path("x.safetensors"), parse_lora(state, metadata))
    with apply_loras(pipe, [use]) as report:
        assert report.patched == len(use.lora.modules) and not report.unmatched
        return _unet_output(pipe), _te_output(pipe)


def test_lora_peft_to_kohya_and_back_gives_the_same_output(sd1) -> None:
    peft = peft_lora_state(sd1, rank=2)
    kohya, kohya_meta, family = convert_lora_state(peft, {}, to="kohya")
    assert family == "sd1" and kohya_meta["ss_network_module"] == "networks.lora"
    te_keys = [k for k in kohya if k.startswith("lora_te")]
    assert te_keys and all(k.startswith("lora_te_text_model_encoder_layers_") for k in te_keys)  # A1111's names
    assert all(k.startswith(("lora_unet_down_blocks_", "lora_unet_up_blocks_", "lora_unet_mid_block_", "lora_te_"))
               for k in kohya)
    assert float(kohya[next(k for k in kohya if k.endswith(".alpha"))]) == 2.0  # alpha = rank: PEFT's scale 1
    again, again_meta, _ = convert_lora_state(kohya, kohya_meta, to="peft")
    assert set(again) == set(peft)
    assert json.loads(again_meta["lora_adapter_metadata"])["unet.lora_alpha"] == 2.0
    base = _unet_output(sd1), _te_output(sd1)
    with_peft = _outputs_with(sd1, peft, {})
    with_kohya = _outputs_with(sd1, kohya, kohya_meta)
    with_again = _outputs_with(sd1, again, again_meta)
    assert not torch.equal(base[0], with_peft[0]) and not torch.equal(base[1], with_peft[1])
    for got in (with_kohya, with_again):
        assert torch.equal(got[0], with_peft[0]) and torch.equal(got[1], with_peft[1])


def test_lora_kohya_to_peft_keeps_alpha(sd1) -> None:
    kohya = kohya_lora_state(sd1, rank=4, alpha=1.0)
    peft, meta, family = convert_lora_state(kohya, {}, to="peft")
    assert family == "sd1" and all(k.startswith(("unet.", "text_encoder.")) for k in peft)
    assert json.loads(meta["lora_adapter_metadata"])["text_encoder.lora_alpha"] == 1.0
    expected = _outputs_with(sd1, kohya, {})
    got = _outputs_with(sd1, peft, meta)
    assert torch.allclose(got[0], expected[0], atol=0, rtol=0) and torch.equal(got[1], expected[1])
    with pytest.raises(LoraError, match="not in a sdxl model"):
        convert_lora_state(kohya, {}, to="peft", family="sdxl")
    assert guess_family(parse_lora(kohya, {"ss_base_model_version": "sdxl_base_v1-0"})) == "sdxl"


@pytest.mark.slow
def test_conversion_jobs(studio_factory, tiny_model, sd1, tmp_path: Path) -> None:
    from modules.jobs.model import JobState
    from modules.jobs.submit import submit_job
    from modules.models.file_jobs import ConvertLoraRequest, ConvertModelRequest
    from tests.fixtures.tiny_networks import write_safetensors

    def prepare(data: Path, ckpt: Path) -> None:
        import shutil

        shutil.copytree(tiny_model("sd1", fmt="diffusers"), ckpt / "folder-model")
        write_safetensors(data / "models" / "Lora" / "style.safetensors", peft_lora_state(sd1))

    srv = studio_factory(("--nowebui",), prepare=prepare, load=False, name="convert-more")
    ctx = srv.ctx

    def run(req) -> dict:
        job = submit_job(ctx, req, owner="t", source="test")
        ctx.queue.wait(job.id, 300)
        assert job.state is JobState.SUCCEEDED, job.error
        return job.result

    single = run(ConvertModelRequest(source="folder-model", operation="to_single_file"))
    assert single["checkpoint"] == "folder-model.safetensors" and ctx.catalog.find("folder-model.safetensors")
    back = run(ConvertModelRequest(source="folder-model.safetensors", operation="to_diffusers", output="again"))
    assert back["checkpoint"] == "again" and (ctx.paths.ckpt_dirs[0] / "again" / "model_index.json").is_file()
    with pytest.raises(Exception, match="diffusers folder"):
        submit_job(ctx, ConvertModelRequest(source="again", operation="fp16"), owner="t", source="test")
    with pytest.raises(Exception, match="single file already"):
        submit_job(ctx, ConvertModelRequest(source="folder-model.safetensors", operation="to_single_file"),
                   owner="t", source="test")
    lora = run(ConvertLoraRequest(source="style.safetensors", to="kohya"))
    assert lora["file"] == "style-kohya.safetensors" and lora["family"] == "sd1"
    with safe_open(str(ctx.paths.lora_dir / "style-kohya.safetensors"), framework="pt") as handle:
        assert any(k.startswith("lora_te_text_model_") for k in handle.keys())
    with pytest.raises(Exception, match="no LoRA named"):
        submit_job(ctx, ConvertLoraRequest(source="../config.json"), owner="t", source="test")
