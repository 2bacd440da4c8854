"""LoRA training of SDXL and of text encoders (issue 27): kohya SDXL keys (``lora_unet_`` in SGM names,
``lora_te1_``, ``lora_te2_``) that name the layers A1111 patches and that the studio's own LoRA path loads with
the trained effect; SD 1.x text-encoder keys ``lora_te_text_model_*`` under transformers 5; exact resume with
text-encoder adapters; TensorBoard logs in the session folder."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from PIL import Image

from modules.jobs.progress import JobControl
from modules.models.loader import LoadOptions, load_model
from modules.training.lora.dataset import load_dataset
from modules.training.lora.export import export_lora
from modules.training.lora.request import TrainLoraRequest
from modules.training.lora.session import Session
from modules.training.lora.trainer import adapter_state, text_adapter_states, train

pytestmark = pytest.mark.slow  # they train models (README: "-m 'not slow'" leaves them out)


def _images(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(2):
        picture = Image.new("RGB", (96, 64), (40 * i, 200, 90))  # not square: SDXL's original size and crop
        picture.paste((250, 20, 20), (20 + 10 * i, 16, 60, 48))
        picture.save(folder / f"{i}.png")
    (folder / "0.txt").write_text("a sks shape, red")
    return folder


def _model(tiny_checkpoints, model_cache_dir: Path, family: str):
    model = load_model(tiny_checkpoints[family]["single"], LoadOptions(cache_dir=model_cache_dir))
    model.pipeline.set_progress_bar_config(disable=True)
    return model


def _train(root: Path, req: TrainLoraRequest, model, control: JobControl | None = None, **kw):
    images = load_dataset(root / "set", [root], 64, req.instance_prompt)
    return train(req, model, images, Session.for_request(root / "data", req), control or JobControl(), **kw)


@pytest.fixture(scope="module")
def sdxl_run(tiny_checkpoints, model_cache_dir, tmp_path_factory):
    """A tiny SDXL trained 4 steps (UNet + both text encoders, samples at step 4), and its kohya export."""
    root = tmp_path_factory.mktemp("sdxl-lora")
    _images(root / "set")
    req = TrainLoraRequest(name="xl", dataset="set", steps=4, checkpoint_every=2, seed=4, learning_rate=5e-3,
                           rank=2, alpha=2.0, train_text_encoder=True, text_encoder_lr=2e-3, sample_every=4,
                           sample_steps=1)
    model = _model(tiny_checkpoints, model_cache_dir, "sdxl")
    outcome = _train(root, req, model)
    path = export_lora(root / "Lora" / "xl.safetensors", model.pipeline, req, family_id=model.family.id, metadata={})
    return root, req, model, outcome, path


def _a1111_names(checkpoint: Path) -> set[str]:
    """The layer names A1111 gives an SGM checkpoint's modules (``name.replace(".", "_")``, its prefixes)."""
    from safetensors import safe_open

    with safe_open(str(checkpoint), "pt") as handle:
        keys = list(handle.keys())
    names = set()
    for key in keys:
        module = key.rsplit(".", 1)[0]
        for prefix, a1111 in (("model.diffusion_model.", "diffusion_model_"),
                              ("conditioner.embedders.0.transformer.", "0_transformer_"),
                              ("conditioner.embedders.1.model.", "1_model_")):
            if module.startswith(prefix):
                names.add(a1111 + module[len(prefix):].replace(".", "_"))
        if key.endswith("in_proj_weight"):  # OpenCLIP attention: q, k and v LoRAs patch the packed projection
            names.add("1_model_" + key[len("conditioner.embedders.1.model."):-len("_weight")].replace(".", "_"))
    return names


def _a1111_target(key: str) -> str:
    """Where A1111's networks.py puts an SDXL kohya module (its convert_diffusers_name_to_compvis and fallbacks)."""
    if key.startswith("lora_unet_"):
        return "diffusion_model_" + key[len("lora_unet_"):]
    if match := re.match(r"lora_te1_text_model_(.+)", key):
        return "0_transformer_text_model_" + match[1]
    match = re.match(r"lora_te2_text_model_encoder_layers_(\d+)_(.+)", key)
    assert match, key
    rest = match[2].replace("self_attn", "attn").replace("mlp_fc1", "mlp_c_fc").replace("mlp_fc2", "mlp_c_proj")
    rest = re.sub(r"attn_[qkv]_proj$", "attn_in_proj", rest)
    return f"1_model_transformer_resblocks_{match[1]}_{rest}"


def test_sdxl_export_has_kohya_sdxl_keys_that_name_a1111_layers(sdxl_run, tiny_checkpoints) -> None:
    from safetensors import safe_open

    root, req, model, outcome, path = sdxl_run
    assert outcome.last_step == 4 and all(l == l for l in outcome.losses)
    with safe_open(str(path), "pt") as handle:
        keys, meta = list(handle.keys()), handle.metadata()
    modules = {k.rsplit(".", 2)[0] if k.endswith("weight") else k.rsplit(".", 1)[0] for k in keys}
    by_prefix = {p: [m for m in modules if m.startswith(p)] for p in ("lora_unet_", "lora_te1_", "lora_te2_")}
    assert sum(map(len, by_prefix.values())) == len(modules) and all(by_prefix.values()), by_prefix.keys()
    assert all(re.match(r"lora_unet_(input_blocks|middle_block|output_blocks)_\d", m) for m in by_prefix["lora_unet_"])
    assert all(m.startswith("lora_te1_text_model_encoder_layers_") for m in by_prefix["lora_te1_"])
    assert all(m.startswith("lora_te2_text_model_encoder_layers_") for m in by_prefix["lora_te2_"])
    layers = _a1111_names(tiny_checkpoints["sdxl"]["single"])
    missing = sorted(m for m in modules if _a1111_target(m) not in layers)
    assert not missing, missing[:5]
    assert meta["ss_base_model_version"] == "sdxl_base_v1-0" and meta["ss_network_train_unet_only"] == "False"
    assert meta["ss_text_encoder_lr"] == "0.002"


def test_sdxl_export_loads_through_the_studio_lora_path(sdxl_run, tiny_checkpoints, model_cache_dir) -> None:
    from modules.generation.addons.lora import LoraUse, apply_loras, read_lora_file

    root, req, trained, outcome, path = sdxl_run
    base = _model(tiny_checkpoints, model_cache_dir, "sdxl")
    lora = read_lora_file(path)
    assert {kind for kind, _ in lora.modules} == {"unet", "te", "te2"}
    ids = base.pipeline.tokenizer(["a sks shape"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    ids2 = base.pipeline.tokenizer_2(["a sks shape"], padding="max_length", max_length=77,
                                     return_tensors="pt").input_ids
    unet = base.pipeline.unet
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    hidden = torch.randn(1, 77, unet.config.cross_attention_dim, generator=torch.Generator().manual_seed(1))
    pooled = torch.randn(1, base.pipeline.text_encoder_2.config.projection_dim,
                         generator=torch.Generator().manual_seed(2))
    cond = {"encoder_hidden_states": hidden,
            "added_cond_kwargs": {"text_embeds": pooled, "time_ids": torch.tensor([[64.0, 96, 0, 16, 64, 64]])}}
    t = torch.tensor([500])

    def outputs(pipe) -> list[torch.Tensor]:
        return [pipe.unet(x, t, **cond).sample, pipe.text_encoder(ids)[0], pipe.text_encoder_2(ids2)[0]]

    with torch.no_grad():
        want = outputs(trained.pipeline)
        plain = outputs(base.pipeline)
        with apply_loras(base.pipeline, [LoraUse("xl", path, lora, te=1.0, unet=1.0)]) as report:
            got = outputs(base.pipeline)
        assert not report.unmatched and report.patched == len(lora.modules)
        restored = outputs(base.pipeline)
    for name, w, p, g, r in zip(("unet", "te1", "te2"), want, plain, got, restored):
        assert (w - p).abs().max() > 1e-4, f"{name}: the adapter learned nothing"
        assert torch.allclose(g, w, atol=1e-5), (name, float((g - w).abs().max()))
        assert torch.equal(r, p), f"{name}: weights not restored"


def test_sdxl_text_encoder_lora_resumes_exactly(sdxl_run, tiny_checkpoints, model_cache_dir) -> None:
    root, req, straight, _, _ = sdxl_run
    resumed = req.model_copy(update={"name": "xl-resumed", "sample_every": 0})
    control = JobControl()

    def stop(step: int, loss: float) -> None:
        if step == 3:
            control.cancel_event.set()

    first = _train(root, resumed, _model(tiny_checkpoints, model_cache_dir, "sdxl"), control, on_log=stop)
    assert first.stopped and first.last_step == 3
    model = _model(tiny_checkpoints, model_cache_dir, "sdxl")  # a new process: a fresh base model
    assert _train(root, resumed, model).steps_done == 1
    want = {"unet": adapter_state(straight.pipeline.unet), **text_adapter_states(straight.pipeline)}
    got = {"unet": adapter_state(model.pipeline.unet), **text_adapter_states(model.pipeline)}
    assert set(got) == {"unet", "text_encoder", "text_encoder_2"} and got.keys() == want.keys()
    for part in got:
        assert max(float((got[part][k] - want[part][k]).abs().max()) for k in got[part]) <= 1e-6, part


def test_tensorboard_logs_loss_lr_and_samples(sdxl_run) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root, req, _, outcome, _ = sdxl_run
    board = EventAccumulator(str(Session.for_request(root / "data", req).folder / "tensorboard"),
                             size_guidance={"images": 0, "scalars": 0})
    board.Reload()
    loss = board.Scalars("train/loss")
    assert [e.step for e in loss] == [1, 2, 3, 4]
    assert [round(e.value, 5) for e in loss] == [round(v, 5) for v in outcome.losses]
    assert [e.step for e in board.Scalars("train/lr")] == [1, 2, 3, 4]
    assert [e.step for e in board.Images("samples/0")] == [4]


def test_sd1_text_encoder_lora_exports_lora_te_text_model_keys(tiny_checkpoints, model_cache_dir, tmp_path) -> None:
    from safetensors import safe_open

    from modules.generation.addons.lora import LoraUse, apply_loras, read_lora_file

    _images(tmp_path / "set")
    req = TrainLoraRequest(name="te", dataset="set", steps=2, seed=1, learning_rate=5e-3, rank=2, alpha=2.0,
                           train_text_encoder=True)
    trained = _model(tiny_checkpoints, model_cache_dir, "sd1")
    _train(tmp_path, req, trained)
    path = export_lora(tmp_path / "te.safetensors", trained.pipeline, req, family_id=trained.family.id, metadata={})
    with safe_open(str(path), "pt") as handle:
        keys, meta = list(handle.keys()), handle.metadata()
    te = [k for k in keys if not k.startswith("lora_unet_")]
    assert te and all(k.startswith("lora_te_text_model_encoder_layers_") for k in te), te[:3]
    assert meta["ss_base_model_version"] == "sd_v1" and meta["ss_network_train_unet_only"] == "False"
    ids = trained.pipeline.tokenizer(["a sks shape"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    base = _model(tiny_checkpoints, model_cache_dir, "sd1")
    with torch.no_grad():
        want = trained.pipeline.text_encoder(ids)[0]
        with apply_loras(base.pipeline, [LoraUse("te", path, read_lora_file(path))]) as report:
            got = base.pipeline.text_encoder(ids)[0]
    assert not report.unmatched
    assert torch.allclose(got, want, atol=1e-5), float((got - want).abs().max())
    with pytest.raises(ValueError, match="text_encoder_lr is only used with train_text_encoder"):
        TrainLoraRequest(name="x", dataset="set", text_encoder_lr=1e-5)


def test_flux_and_the_sdxl_refiner_are_refused_before_loading(tiny_checkpoints, tmp_path) -> None:
    from modules.training.lora.errors import TrainingError
    from modules.training.lora.job import check_family
    from tests.fixtures.flux_models import build_tiny_flux

    flux = build_tiny_flux("schnell", tmp_path / "models", fmt="all-in-one")
    with pytest.raises(TrainingError, match="FLUX.*not offered.*LoRA loader"):
        check_family(flux)
    with pytest.raises(TrainingError, match="refiner is not offered"):
        check_family(tiny_checkpoints["sdxl-refiner"]["single"])
    check_family(tiny_checkpoints["sdxl"]["single"])  # the base model is trained
