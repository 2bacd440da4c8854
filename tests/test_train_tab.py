"""The Train tab (issue 27): in the studio's Gradio config with its sub-tabs; a LoRA training submitted
through the tab's Train event runs, its loss plot renders and samples show; Stop keeps the session, the
Sessions table lists it, Resume continues it and Delete moves it to the trash."""

from __future__ import annotations

import time
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.timeout(900)


def _images(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(2):
        picture = Image.new("RGB", (64, 64), (30 + 60 * i, 160, 90))
        picture.paste((240, 30, 30), (12 + 8 * i, 14, 44, 46))
        picture.save(folder / f"{i}.png")
    return folder


@pytest.fixture(scope="module")
def studio(studio_factory):
    return studio_factory(("--nowebui",), prepare=lambda data, ckpt: _images(data / "train" / "shape"))


@pytest.fixture(scope="module")
def tab(studio):
    from webui.train_tab import build_train_tab

    with gr.Blocks():
        return build_train_tab(studio.ctx)


def _labels(config: dict) -> list[str]:
    return [c.get("props", {}).get("label") for c in config["components"]]


def test_the_app_config_has_the_train_tab(studio) -> None:
    from webui.app import build_ui

    config = build_ui(studio.ctx).get_config_file()
    labels = _labels(config)
    for label in ("Train", "Dataset", "DreamBooth", "LoRA", "Textual inversion", "Sessions"):
        assert label in labels, label
    ids = {c.get("props", {}).get("elem_id") for c in config["components"]}
    assert {"train_lora_start", "train_lora_loss", "train_lora_samples", "train_sessions_table", "train_db_start",
            "train_db_class_prompt", "train_db_loss", "train_db_samples"} <= ids


def _lora_args(name: str, steps: int, **extra) -> list:
    values = {"checkpoint": None, "folder": "train/shape", "uploads": None, "name": name, "prompt": "a sks shape",
              "rank": 2, "alpha": 2.0, "steps": steps, "lr": 5e-3, "batch": 1, "seed": 1, "resolution": 64,
              "sample_every": 0, "sample_prompts": "", "targets": "UNet only", "te_lr": None}
    values.update(extra)
    return list(values.values())


def test_training_through_the_tab_renders_the_loss_plot_and_samples(studio, tab) -> None:
    outputs = list(tab.train_lora(*_lora_args("tabshape", 3, sample_every=3, sample_prompts="a sks shape",
                                              targets="UNet + text encoder")))
    status, plot, speed, samples = outputs[-1]
    assert 'data-state="done"' in status and "Done: 3 steps" in status, status
    assert "step 3/3" in speed
    pixels = np.asarray(plot)
    orange = (np.abs(pixels.astype(int) - (234, 88, 12)).sum(axis=2) < 30).sum()
    assert plot.size == (480, 240) and orange > 50  # the curve is drawn
    assert len(samples) == 1 and "step 3" in samples[0][1] and Path(samples[0][0]).is_file()
    from safetensors import safe_open

    with safe_open(str(studio.ctx.paths.lora_dir / "tabshape.safetensors"), "pt") as handle:
        assert any(k.startswith("lora_te_text_model_encoder_layers_") for k in handle.keys())  # the text encoder too
    rows, picker = tab.sessions()
    assert ["lora", "tabshape", "3/3"] == rows[0][:3] and rows[0][4] == "finished"


def test_a_refused_request_is_said_in_the_page(tab) -> None:
    status, *_ = list(tab.train_lora(*_lora_args("outside", 2, folder="/etc")))[-1]
    assert "Not started" in status and "outside the folders" in status
    status, *_ = list(tab.train_lora(*_lora_args("bad/name", 2)))[-1]
    assert "Not started" in status and "name" in status


def test_stop_resume_and_delete_a_session(studio, tab) -> None:
    ctx = studio.ctx
    folder = ctx.paths.data_dir / "training" / "lora" / "long"
    run = tab.train_lora(*_lora_args("long", 400))
    first = next(run)  # submitted
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (folder / "loss.jsonl").is_file():
        time.sleep(0.1)
    assert "Stopping" in tab.stop_lora("long")
    status = list(run)[-1][0]
    assert "Stopped" in status, status
    rows, _ = tab.sessions()
    row = next(r for r in rows if r[1] == "long")
    saved = int(row[2].split("/")[0])
    assert row[4] == "stopped" and 0 < saved < 400

    message, rows, _ = tab.resume("lora/long")
    assert "Resumed" in message, message
    job = next(j for j in ctx.queue.jobs() if j.kind == "train_lora" and j.request.name == "long"
               and not j.state.finished)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and job.progress.step <= saved:
        time.sleep(0.05)
    assert job.progress.step > saved  # it went on from the saved step
    message, _, _ = tab.delete("lora/long")
    assert "stop it before deleting" in message
    tab.stop_lora("long")
    job.done.wait(120)
    message, rows, _ = tab.delete("lora/long")
    assert "Moved lora/long" in message and not folder.exists()
    assert list((ctx.paths.data_dir / "trash" / "training" / "lora").glob("long-*"))
    assert all(r[1] != "long" for r in rows)


def test_uploaded_images_become_a_dataset_in_the_data_dir(studio, tmp_path) -> None:
    from modules.training.uploads import UploadError, save_uploads

    upload = _images(tmp_path / "upload")
    (upload / "0.txt").write_text("a sks shape, red square")
    (upload / "notes.bin").write_bytes(b"x")
    folder, count = save_uploads(studio.ctx.paths.data_dir, "uploaded", sorted(upload.iterdir()))
    assert count == 2 and folder == studio.ctx.paths.data_dir / "training" / "datasets" / "uploaded"
    assert (folder / "0.txt").read_text() == "a sks shape, red square"
    with pytest.raises(UploadError, match="no images"):
        save_uploads(studio.ctx.paths.data_dir, "empty", [upload / "notes.bin"])
    with pytest.raises(UploadError, match="dataset name"):
        save_uploads(studio.ctx.paths.data_dir, "../up", sorted(upload.iterdir()))


def test_textual_inversion_through_the_tab(studio, tab) -> None:
    outputs = list(tab.train_embedding(None, "train/shape", None, "tabword", "red", 2, "a photo of {token}", 2, 5e-2,
                                       1, 0, 64))
    status, plot, speed, _ = outputs[-1]
    assert 'data-state="done"' in status and "Done: 2 steps" in status, status
    assert "step 2/2" in speed and plot is not None
    assert (studio.ctx.paths.embeddings_dir / "tabword.safetensors").is_file()
    rows, _ = tab.sessions()
    assert any(r[:3] == ["embedding", "tabword", "2/2"] for r in rows)
    status, *_ = list(tab.train_embedding(None, "train/shape", None, "tab word", "red", 1, "a photo", 2, 5e-2,
                                          1, 0, 64))[-1]
    assert "Not started" in status
