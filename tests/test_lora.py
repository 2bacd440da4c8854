"""LoRA: kohya and PEFT layouts on tiny SD 1.x / SDXL pipelines, exact non-destructive merging,
separate te/unet multipliers, lookup by stem/alias, the parse cache, infotext hashes, clear refusals,
and the hook through the txt2img runner."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from modules.generation.addons.hooks import SamplingContext
from modules.generation.addons.lora import LoraCache, LoraLibrary, LoraUse, apply_loras, lora_hook, read_lora_file
from modules.generation.addons.lora_convert import LoraError, ModuleIndex, parse_lora
from modules.generation.prompts.parser import extract_extra_networks
from modules.models.hashing import HashCache
from tests.fixtures.tiny_models import build_tiny_components, tiny_pipeline
from tests.fixtures.tiny_networks import kohya_lora_state, peft_lora_state, write_safetensors


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


def _snapshot(pipe) -> dict[str, torch.Tensor]:
    out = {}
    for attr in ("unet", "text_encoder", "text_encoder_2"):
        module = getattr(pipe, attr, None)
        if module is not None:
            out.update({f"{attr}.{k}": v.detach().clone() for k, v in module.state_dict().items()})
    return out


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _image(pipe, prompt: str = "a red circle") -> np.ndarray:
    out = pipe(prompt=prompt, num_inference_steps=2, height=64, width=64, guidance_scale=5.0,
               generator=torch.Generator().manual_seed(3), output_type="np")
    return out.images[0]


def _use(path: Path, te: float = 1.0, unet: float | None = None) -> LoraUse:
    return LoraUse(path.stem, path, read_lora_file(path), te=te, unet=te if unet is None else unet)


def test_kohya_sd1_every_layer_matches_and_merge_is_exact(sd1, tmp_path) -> None:
    state = kohya_lora_state(sd1, rank=2, alpha=1.0)
    path = write_safetensors(tmp_path / "k.safetensors", state)
    parsed = read_lora_file(path)
    assert any(k[0] == "te" for k in parsed.modules) and any(k[0] == "unet" for k in parsed.modules)
    index = ModuleIndex.for_pipeline(sd1)
    assert all(index.resolve(k) is not None for k in parsed.modules)

    name = "down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    module = sd1.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn2.to_k
    original_param, before = module.weight, _snapshot(sd1)
    down, up = state[f"lora_unet_{name}.lora_down.weight"], state[f"lora_unet_{name}.lora_up.weight"]
    with apply_loras(sd1, [LoraUse("k", path, parsed, te=0.7, unet=0.7)]) as report:
        assert report.patched == len(parsed.modules) and not report.unmatched
        expected = original_param + 0.7 * (up @ down) * (1.0 / 2)
        assert torch.allclose(module.weight, expected, atol=1e-6)
        assert module.weight is not original_param
    assert module.weight is original_param
    assert _same(before, _snapshot(sd1))


def test_weight_zero_is_bit_exact_and_weight_one_changes(sd1, tmp_path) -> None:
    path = write_safetensors(tmp_path / "k.safetensors", kohya_lora_state(sd1))
    plain = _image(sd1)
    with apply_loras(sd1, [_use(path, 0.0)]) as report:
        assert report.patched == 0
        assert np.array_equal(_image(sd1), plain)
    with apply_loras(sd1, [_use(path, 1.0)]):
        changed = _image(sd1)
    assert np.abs(changed - plain).max() > 1e-3
    assert np.array_equal(_image(sd1), plain)


def test_separate_te_and_unet_multipliers(sd1, tmp_path) -> None:
    path = write_safetensors(tmp_path / "k.safetensors", kohya_lora_state(sd1))
    te_before = {k: v.clone() for k, v in sd1.text_encoder.state_dict().items()}
    unet_before = {k: v.clone() for k, v in sd1.unet.state_dict().items()}
    with apply_loras(sd1, [_use(path, te=0.0, unet=1.0)]):
        assert _same(te_before, sd1.text_encoder.state_dict())
        assert not _same(unet_before, sd1.unet.state_dict())
    with apply_loras(sd1, [_use(path, te=1.0, unet=0.0)]):
        assert _same(unet_before, sd1.unet.state_dict())
        assert not _same(te_before, sd1.text_encoder.state_dict())


def test_peft_layout_and_two_loras_at_once(sd1, tmp_path) -> None:
    peft = write_safetensors(tmp_path / "p.safetensors", peft_lora_state(sd1))
    kohya = write_safetensors(tmp_path / "k.safetensors", kohya_lora_state(sd1))
    parsed = read_lora_file(peft)
    assert all(m.alpha is None and m.scale == 1.0 for m in parsed.modules.values())
    before = _snapshot(sd1)
    with apply_loras(sd1, [_use(peft), _use(kohya, 0.5)]) as report:
        assert not report.unmatched
        both = _image(sd1)
    with apply_loras(sd1, [_use(peft)]):
        one = _image(sd1)
    assert np.abs(both - one).max() > 1e-4
    assert _same(before, _snapshot(sd1))


def test_sdxl_sgm_names_and_both_text_encoders(sdxl, tmp_path) -> None:
    path = write_safetensors(tmp_path / "x.safetensors", kohya_lora_state(sdxl, sgm_names=True))
    parsed = read_lora_file(path)
    assert {k[0] for k in parsed.modules} == {"unet", "te", "te2"}
    assert any(k[1].startswith("input_blocks_") for k in parsed.modules)
    before = _snapshot(sdxl)
    with apply_loras(sdxl, [_use(path)]) as report:
        assert report.patched == len(parsed.modules) and not report.unmatched
    assert _same(before, _snapshot(sdxl))


def test_lora_for_another_family_is_refused(sd1, sdxl, tmp_path) -> None:
    path = write_safetensors(tmp_path / "sd1.safetensors", kohya_lora_state(sd1))
    before = _snapshot(sdxl)
    with pytest.raises(LoraError, match="does not fit the loaded model"):
        with apply_loras(sdxl, [_use(path)]):
            pass
    assert _same(before, _snapshot(sdxl))


def test_unsupported_network_types_and_empty_files() -> None:
    with pytest.raises(LoraError, match="LoHa"):
        parse_lora({"lora_unet_x.hada_w1_a": torch.zeros(2, 2)}, label="LoRA 'h'")
    with pytest.raises(LoraError, match="no LoRA weights"):
        parse_lora({"something": torch.zeros(2)}, label="LoRA 'e'")
    with pytest.raises(LoraError, match="another architecture .*'transformer.single_blocks.0.attn.to_q.lora_A"):
        parse_lora({"transformer.single_blocks.0.attn.to_q.lora_A.weight": torch.zeros(2, 2),
                    "transformer.single_blocks.0.attn.to_q.lora_B.weight": torch.zeros(2, 2)}, label="LoRA 'f'")


def test_library_lookup_by_stem_alias_and_case(sd1, tmp_path) -> None:
    state = kohya_lora_state(sd1, unet=False)
    write_safetensors(tmp_path / "sub" / "Detail.safetensors", state, {"ss_output_name": "add_detail"})
    library = LoraLibrary((tmp_path,))
    assert library.find("Detail").name == "Detail.safetensors"
    assert library.find("add_detail").name == "Detail.safetensors"
    assert library.find("detail").name == "Detail.safetensors"
    with pytest.raises(LoraError, match="not found: put 'nothere.safetensors' in"):
        library.find("nothere")
    assert read_lora_file(tmp_path / "sub" / "Detail.safetensors").alias == "add_detail"


def test_cache_reuses_and_reparses_changed_files(sd1, tmp_path) -> None:
    path = write_safetensors(tmp_path / "c.safetensors", kohya_lora_state(sd1, unet=False))
    cache = LoraCache(max_entries=2)
    first = cache.get(path, read_lora_file)
    assert cache.get(path, read_lora_file) is first
    write_safetensors(path, kohya_lora_state(sd1, unet=False, seed=5))
    os.utime(path, ns=(1, 1))
    assert cache.get(path, read_lora_file) is not first and len(cache) == 1


def test_hook_applies_tags_and_writes_hashes(sd1, tmp_path) -> None:
    lora_dir = tmp_path / "Lora"
    path = write_safetensors(lora_dir / "detail.safetensors", kohya_lora_state(sd1))
    hashes = HashCache(tmp_path / "hashes.json")
    hook = lora_hook(lora_dir, hashes, LoraCache())
    assert "lora" in hook.extra_network_kinds
    _, calls = extract_extra_networks("a cat <lora:detail:1:0.5>")
    ctx = SamplingContext(pipe=sd1, model=None, req=None, task="txt2img", prompts=["a cat"], negatives=[""],  # type: ignore[arg-type]
                          seeds=[1], batch_index=0, extra_networks=calls)
    before = _snapshot(sd1)
    with hook(ctx):
        assert not _same(before, _snapshot(sd1))
    assert _same(before, _snapshot(sd1))
    assert ctx.infotext_params["Lora hashes"] == f"detail: {hashes.addnet_hash(path)[:12]}"
    refiner = SamplingContext(pipe=sd1, model=None, req=None, task="refiner", prompts=["a"], negatives=[""],  # type: ignore[arg-type]
                              seeds=[1], batch_index=0, extra_networks=calls)
    with hook(refiner):
        assert _same(before, _snapshot(sd1))
    _, missing = extract_extra_networks("<lora:nope:1>")
    ctx.extra_networks = missing
    with pytest.raises(LoraError, match="'nope' not found"):
        with hook(ctx):
            pass


def test_through_the_txt2img_runner(tiny_checkpoints, model_cache_dir, tmp_path) -> None:
    from modules.generation.requests import Txt2ImgRequest
    from modules.generation.runners.txt2img import OutputOptions, run_txt2img
    from modules.jobs.progress import JobControl
    from modules.models.catalog import CheckpointInfo
    from modules.models.loader import LoadOptions, load_model
    from modules.models.manager import ActiveModel

    ckpt = tiny_checkpoints["sd1"]["single"]
    model = load_model(ckpt, LoadOptions(cache_dir=model_cache_dir))
    model.pipeline.set_progress_bar_config(disable=True)
    active = ActiveModel(info=CheckpointInfo(ckpt, ckpt.name, False), model=model, sha256="0" * 64, load_seconds=0)
    lora_dir = tmp_path / "Lora"
    write_safetensors(lora_dir / "detail.safetensors", kohya_lora_state(model.pipeline))
    hooks = [lora_hook(lora_dir, HashCache(tmp_path / "h.json"), LoraCache())]

    def run(prompt: str):
        req = Txt2ImgRequest(prompt=prompt, steps=2, width=64, height=64, seed=5, sampler_name="Euler")
        return run_txt2img(req, active, JobControl(), OutputOptions(save=False, outdir=tmp_path), hooks=hooks)

    plain, zero, full = run("a red circle"), run("a red circle <lora:detail:0>"), run("a red circle <lora:detail:1>")
    assert plain.images[0].tobytes() == zero.images[0].tobytes()
    assert plain.images[0].tobytes() != full.images[0].tobytes()
    assert "<lora:detail:1>" in full.infotexts[0] and 'Lora hashes: "detail: ' in full.infotexts[0]
    assert run("a red circle").images[0].tobytes() == plain.images[0].tobytes()


def test_conv_updates_match_running_the_lora_branch() -> None:
    from torch.nn import functional as F

    from modules.generation.addons.lora_convert import LoraModule

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 6, 6, generator=gen)
    weight = torch.randn(5, 4, 3, 3, generator=gen)
    down, up = torch.randn(2, 4, 3, 3, generator=gen), torch.randn(5, 2, 1, 1, generator=gen)
    locon = LoraModule(down=down, up=up, alpha=1.0)
    merged = F.conv2d(x, weight + locon.delta(weight.shape, x.device), padding=1)
    branch = F.conv2d(x, weight, padding=1) + F.conv2d(F.conv2d(x, down, padding=1), up) * 0.5
    assert torch.allclose(merged, branch, atol=1e-5)
    mid = torch.randn(2, 2, 3, 3, generator=gen)
    tucker = LoraModule(down=down[:, :, :1, :1], up=up, alpha=None, mid=mid)
    merged = F.conv2d(x, weight + tucker.delta(weight.shape, x.device), padding=1)
    branch = F.conv2d(x, weight, padding=1) + F.conv2d(F.conv2d(F.conv2d(x, down[:, :, :1, :1]), mid, padding=1), up)
    assert torch.allclose(merged, branch, atol=1e-5)
    linear = LoraModule(down=torch.randn(2, 4, generator=gen), up=torch.randn(3, 2, generator=gen), alpha=4.0)
    assert torch.allclose(linear.delta(torch.Size((3, 4)), x.device, dyn_dim=1),
                          (linear.up[:, :1] @ linear.down[:1]) * 2.0)
