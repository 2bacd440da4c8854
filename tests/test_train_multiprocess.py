"""LoRA training on several worker processes (issue 27 point 7), on the CPU: two processes joined by gloo, as
``devices: "cpu:2"`` launches them for a queued ``train_lora`` job, on tiny SD 1.x.

One test, two short queued jobs: 2 steps, then the same session trained on to 4 (a resume across launches).
The ranks see different images, noise and timesteps (each its slice of the step's global batch), rank 0 alone
writes the session (one loss line a step) and the LoRA, and the weights equal those of one process training
batch 2 straight for 4 steps (what data parallelism promises: gradients averaged over the ranks), which also
shows the resume is exact. Refusals: a GPU launch on a machine without GPUs (over the queue and from the Train
tab's Devices field), a malformed ``devices``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
import torch
from PIL import Image

from modules.training.lora.request import TrainLoraRequest


def _images(folder: Path, count: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        picture = Image.new("RGB", (64, 64), (40 * i, 200, 90))
        picture.paste((250, 20, 20), (10 + 12 * i, 16, 40 + 6 * i, 48))
        picture.save(folder / f"{i}.png")
    return folder


def _request(**extra) -> TrainLoraRequest:
    values = dict(name="ranks", checkpoint="tiny-sd1", dataset="train/set", steps=2, checkpoint_every=1, seed=7, learning_rate=5e-3,
                  batch_size=1, devices="cpu:2")
    values.update(extra)
    return TrainLoraRequest(**values)


@pytest.fixture()
def ctx(tmp_path: Path, tiny_model) -> Iterator[Any]:
    """A studio's context without its HTTP server (the queue and its lanes run): the tiny SD 1.x checkpoint in
    its checkpoint folder, a training folder in its data dir."""
    from modules.app_context import create_app_context
    from modules.flags import parse_flags

    ckpt_dir = tmp_path / "Stable-diffusion"
    ckpt_dir.mkdir()
    (ckpt_dir / "tiny-sd1.safetensors").symlink_to(tiny_model("sd1"))
    _images(tmp_path / "data" / "train" / "set")
    context = create_app_context(parse_flags(["--data-dir", str(tmp_path / "data"), "--ckpt-dir", str(ckpt_dir),
                                              "--skip-load-model-at-start"]))
    try:
        yield context
    finally:
        context.close()


@pytest.mark.slow  # worker processes / trains the embedded default
def test_two_gloo_processes_train_as_one_process_with_twice_the_batch(ctx) -> None:
    from modules.jobs.model import JobState
    from modules.jobs.progress import JobControl
    from modules.jobs.submit import submit_job
    from modules.models.loader import LoadOptions, load_model
    from modules.training.lora.dataset import load_dataset
    from modules.training.lora.session import Session
    from modules.training.lora.trainer import adapter_state, train

    first = submit_job(ctx, _request(), owner="t", source="test")
    ctx.queue.wait(first.id, 120)
    assert first.state is JobState.SUCCEEDED, first.error
    assert first.result["processes"] == 2 and first.result["backend"] == "gloo" and first.result["steps"] == 2
    second = submit_job(ctx, _request(steps=4), owner="t", source="test")  # the same session, trained on
    ctx.queue.wait(second.id, 120)
    assert second.state is JobState.SUCCEEDED, second.error
    assert second.result["steps"] == 4 and (ctx.paths.lora_dir / "ranks.safetensors").is_file()
    session = Session.for_request(ctx.paths.data_dir, _request(steps=4))
    log = session.losses()
    assert [r["step"] for r in log] == [1, 2, 3, 4]  # written once (rank 0), the resumed steps after the first two
    # each rank took its slice of the global batch drawn by (seed, step): rank r the r-th image of the draw
    for record in log:
        generator = torch.Generator("cpu").manual_seed(7 * 1_000_003 + record["step"] - 1)
        drawn = torch.randint(3, (2,), generator=generator).tolist()
        assert record["rank_images"] == [[drawn[0]], [drawn[1]]]
    assert any(r["rank_images"][0] != r["rank_images"][1] for r in log)
    got = torch.load(session.state_file, weights_only=True)["adapter"]

    # one process, batch 2, 4 steps straight: the same weights (up to float summation order)
    model = load_model(ctx.models.resolve("tiny-sd1").path, LoadOptions(cache_dir=ctx.paths.cache_dir))
    model.pipeline.set_progress_bar_config(disable=True)
    one = _request(name="one", steps=4, batch_size=2, devices="single")
    images = load_dataset(ctx.paths.data_dir / "train" / "set", [ctx.paths.data_dir], 64, one.instance_prompt)
    train(one, model, images, Session.for_request(ctx.paths.data_dir, one), JobControl())
    expected = adapter_state(model.pipeline.unet)
    assert got.keys() == expected.keys()
    # measured 1.4e-5 (Adam magnifies summation-order differences); ranks on the same batch differ by ~1e-3
    assert max(float((got[k] - expected[k]).abs().max()) for k in got) <= 1e-4

    with pytest.raises(Exception, match="needs two or more CUDA GPUs"):
        submit_job(ctx, _request(name="gpus", devices="all"), owner="t", source="test")
    with pytest.raises(Exception, match="devices"):
        _request(devices="cpu:0")
    # the Train tab's LoRA section sends its Devices field: refused before anything starts, said in the page
    import gradio as gr

    from webui.train_tab import build_train_tab

    with gr.Blocks():
        tab = build_train_tab(ctx)
    ticks = list(tab.train_lora("tiny-sd1", "train/set", None, "page", "a sks shape", 2, 2.0, 2, 1e-3, 1, 0, 64, 0,
                                "", devices="gpu:4"))
    assert "Not started" in ticks[-1][0] and "needs 4 CUDA GPUs" in ticks[-1][0]
