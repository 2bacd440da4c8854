"""LoRA training (issue 27): exact resume, the kohya export loaded by the studio's own LoRA path, and the
``train_lora`` job end to end (dataset folder rules, the file listed for ``<lora:name:1>``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from modules.jobs.progress import JobControl
from modules.models.loader import LoadOptions, load_model
from modules.training.lora.dataset import load_dataset
from modules.training.lora.request import TrainLoraRequest
from modules.training.lora.session import Session, SessionError
from modules.training.lora.trainer import adapter_state, train


def _images(folder: Path, count: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        picture = Image.new("RGB", (80, 64), (40 * i, 200, 90))
        picture.paste((250, 20, 20), (20 + 10 * i, 16, 50, 48))
        picture.save(folder / f"{i}.png")
    (folder / "0.txt").write_text("a sks shape, red")
    return folder


def _model(tiny_checkpoints, model_cache_dir: Path):
    model = load_model(tiny_checkpoints["sd1"]["single"], LoadOptions(cache_dir=model_cache_dir))
    model.pipeline.set_progress_bar_config(disable=True)
    return model


def _train(tmp: Path, data: Path, req: TrainLoraRequest, model, control: JobControl | None = None, **kw):
    images = load_dataset(data, [tmp], 64, req.instance_prompt)
    return train(req, model, images, Session.for_request(tmp / "data", req), control or JobControl(), **kw)


def test_stopped_and_resumed_run_equals_a_straight_run(tiny_checkpoints, model_cache_dir, tmp_path) -> None:
    data = _images(tmp_path / "set")
    straight = TrainLoraRequest(name="straight", dataset=str(data), steps=6, checkpoint_every=2, seed=3,
                                learning_rate=1e-3)
    model = _model(tiny_checkpoints, model_cache_dir)
    assert _train(tmp_path, data, straight, model).last_step == 6
    expected = adapter_state(model.pipeline.unet)

    resumed = straight.model_copy(update={"name": "resumed"})
    control = JobControl()
    stop_after = {"step": 3}

    def stop(step: int, loss: float) -> None:
        if step == stop_after["step"]:
            control.cancel_event.set()

    first = _train(tmp_path, data, resumed, _model(tiny_checkpoints, model_cache_dir), control, on_log=stop)
    assert first.stopped and first.last_step == 3
    model = _model(tiny_checkpoints, model_cache_dir)  # a new process: a fresh base model
    second = _train(tmp_path, data, resumed, model)
    assert second.last_step == 6 and second.steps_done == 3
    got = adapter_state(model.pipeline.unet)
    assert got.keys() == expected.keys()
    assert max(float((got[k] - expected[k]).abs().max()) for k in got) <= 1e-6
    steps = [r["step"] for r in Session.for_request(tmp_path / "data", resumed).losses()]
    assert steps == [1, 2, 3, 4, 5, 6]
    with pytest.raises(SessionError, match="other settings.*rank"):
        Session.for_request(tmp_path / "data", resumed.model_copy(update={"rank": 8}))


def test_kohya_export_loads_through_the_studio_lora_path(tiny_checkpoints, model_cache_dir, tmp_path) -> None:
    from modules.generation.addons.lora import LoraUse, apply_loras, read_lora_file
    from modules.training.lora.export import write_lora

    data = _images(tmp_path / "set")
    req = TrainLoraRequest(name="shape", dataset=str(data), steps=3, seed=1, learning_rate=5e-3, rank=2, alpha=1.0)
    trained = _model(tiny_checkpoints, model_cache_dir)
    _train(tmp_path, data, req, trained)
    path = write_lora(tmp_path / "Lora" / "shape.safetensors", adapter_state(trained.pipeline.unet),
                      alpha=req.alpha, rank=req.rank, metadata={"ss_output_name": "shape"})
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        keys, meta = list(handle.keys()), handle.metadata()
    assert all(k.startswith("lora_unet_") for k in keys) and any(k.endswith(".lora_down.weight") for k in keys)
    assert meta["ss_network_dim"] == "2" and meta["ss_network_alpha"] == "1.0"

    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    emb = torch.randn(1, 77, trained.pipeline.unet.config.cross_attention_dim, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([500])
    with torch.no_grad():
        with_adapter = trained.pipeline.unet(x, t, encoder_hidden_states=emb).sample
        base = _model(tiny_checkpoints, model_cache_dir)
        plain = base.pipeline.unet(x, t, encoder_hidden_states=emb).sample
        with apply_loras(base.pipeline, [LoraUse("shape", path, read_lora_file(path), te=1.0, unet=1.0)]):
            merged = base.pipeline.unet(x, t, encoder_hidden_states=emb).sample
    assert (with_adapter - plain).abs().max() > 1e-4  # the adapter learned something
    assert torch.allclose(merged, with_adapter, atol=1e-5), float((merged - with_adapter).abs().max())


def test_train_lora_job_end_to_end(studio_factory) -> None:
    from modules.generation.requests import Txt2ImgRequest
    from modules.jobs.model import JobState
    from modules.jobs.submit import submit_job

    srv = studio_factory(("--nowebui",), prepare=lambda data, ckpt: _images(data / "train" / "shape"))
    ctx = srv.ctx
    with pytest.raises(Exception, match="outside the folders"):
        submit_job(ctx, TrainLoraRequest(name="x", dataset="/etc"), owner="t", source="test")
    job = submit_job(ctx, TrainLoraRequest(name="myshape", dataset="train/shape", steps=4, learning_rate=5e-3),
                     owner="t", source="test")
    ctx.queue.wait(job.id, 300)
    assert job.state is JobState.SUCCEEDED, job.error
    assert job.result["steps"] == 4 and (ctx.paths.lora_dir / "myshape.safetensors").is_file()

    def image(prompt: str) -> np.ndarray:
        gen = submit_job(ctx, Txt2ImgRequest(prompt=prompt, steps=3, width=64, height=64, seed=5,
                                             sampler_name="Euler"), owner="t", source="test")
        ctx.queue.wait(gen.id, 120)
        assert gen.state is JobState.SUCCEEDED, gen.error
        return np.asarray(gen.result.images[0], dtype=np.int16)

    assert np.abs(image("a shape <lora:myshape:1>") - image("a shape")).max() > 0
    with pytest.raises(Exception, match="exists already"):
        submit_job(ctx, TrainLoraRequest(name="myshape", dataset="train/shape", steps=4, learning_rate=5e-3),
                   owner="t", source="test")
