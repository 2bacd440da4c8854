"""Sample images during LoRA training (issue 27): written every N steps for fixed prompts and seeds, and a
run with samples trains exactly like one without (sampling draws nothing from the training's generators)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modules.jobs.progress import JobControl
from modules.models.loader import LoadOptions, load_model
from modules.training.lora.dataset import load_dataset
from modules.training.lora.request import TrainLoraRequest
from modules.training.lora.session import Session
from modules.training.lora.trainer import adapter_state, train
from modules.training.sampling import list_samples


def _images(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(2):
        picture = Image.new("RGB", (64, 64), (40 * i, 200, 90))
        picture.paste((250, 20, 20), (10 + 10 * i, 16, 40, 48))
        picture.save(folder / f"{i}.png")
    return folder


def _model(tiny_checkpoints, cache: Path):
    return load_model(tiny_checkpoints["sd1"]["single"], LoadOptions(cache_dir=cache))


def _run(tmp: Path, data: Path, req: TrainLoraRequest, model, control: JobControl | None = None, **kw):
    images = load_dataset(data, [tmp], 64, req.instance_prompt)
    return train(req, model, images, Session.for_request(tmp / "data", req), control or JobControl(), **kw)


def test_samples_every_n_steps_keep_resume_exact(tiny_checkpoints, model_cache_dir, tmp_path) -> None:
    data = _images(tmp_path / "set")
    plain = TrainLoraRequest(name="plain", dataset=str(data), steps=4, checkpoint_every=2, seed=7, learning_rate=1e-3)
    model = _model(tiny_checkpoints, model_cache_dir)
    _run(tmp_path, data, plain, model)
    expected = adapter_state(model.pipeline.unet)

    sampled = plain.model_copy(update={"name": "sampled", "sample_every": 2, "sample_steps": 2,
                                       "sample_prompts": ["a sks shape", "a red sks shape"]})
    control = JobControl()

    def stop(step: int, loss: float) -> None:
        if step == 2:
            control.cancel_event.set()

    first = _run(tmp_path, data, sampled, _model(tiny_checkpoints, model_cache_dir), control, on_log=stop)
    assert first.stopped and first.last_step == 2
    model = _model(tiny_checkpoints, model_cache_dir)
    assert _run(tmp_path, data, sampled, model).last_step == 4
    got = adapter_state(model.pipeline.unet)
    assert max(float((got[k] - expected[k]).abs().max()) for k in got) <= 1e-6  # sampling changed nothing

    samples = list_samples(tmp_path / "data" / "training" / "lora" / "sampled" / "samples")
    assert [(step, index) for _, step, index in samples] == [(4, 0), (4, 1), (2, 0), (2, 1)]
    first_img = np.asarray(Image.open(samples[2][0]), dtype=np.int16)
    later_img = np.asarray(Image.open(samples[0][0]), dtype=np.int16)
    assert first_img.shape == (64, 64, 3)
    assert np.abs(first_img - later_img).max() > 0  # same prompt and seed: the adapter's change shows


def test_sample_prompts_default_to_the_instance_prompt() -> None:
    req = TrainLoraRequest(name="x", dataset="d", instance_prompt="a zwx dog", sample_prompts=["  ", ""])
    assert req.samples() == ["a zwx dog"]
    with pytest.raises(ValueError):
        TrainLoraRequest(name="x", dataset="d", sample_every=-1)
