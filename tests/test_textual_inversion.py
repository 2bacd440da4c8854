"""Textual inversion (issue 27): only the new word's vectors train (the text encoder, UNet and VAE stay
as they were), a stopped and resumed run equals a straight one, the A1111 export (``emb_params``) loads
through the studio's embeddings module, and a prompt naming it changes the image; the job end to end,
create (steps 0) included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from modules.jobs.progress import JobControl
from modules.models.loader import LoadOptions, load_model
from modules.training.embedding_request import TrainEmbeddingRequest
from modules.training.lora.dataset import load_dataset
from modules.training.lora.session import Session
from modules.training.textual_inversion import init_vectors, train_embedding, write_embedding

pytestmark = pytest.mark.timeout(900)


def _images(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(2):
        picture = Image.new("RGB", (64, 64), (20, 40 + 50 * i, 160))
        picture.paste((250, 220, 20), (14 + 6 * i, 12, 46, 50))
        picture.save(folder / f"{i}.png")
    (folder / "1.txt").write_text("yellow")
    return folder


def _model(tiny_checkpoints, cache: Path):
    model = load_model(tiny_checkpoints["sd1"]["single"], LoadOptions(cache_dir=cache))
    model.pipeline.set_progress_bar_config(disable=True)
    return model


def _train(tmp: Path, data: Path, req: TrainEmbeddingRequest, model, control: JobControl | None = None, **kw):
    images = load_dataset(data, [tmp], 64, "")
    session = Session.in_folder(tmp / "data" / "training" / "embedding" / req.name, req)
    initial = init_vectors(model, req.init_text, req.vector_count())
    return train_embedding(req, model, images, session, control or JobControl(), initial, **kw)


def test_only_the_new_vectors_train_and_resume_is_exact(tiny_checkpoints, model_cache_dir, tmp_path) -> None:
    data = _images(tmp_path / "set")
    straight = TrainEmbeddingRequest(name="straight", dataset=str(data), steps=4, checkpoint_every=2, seed=2,
                                     learning_rate=5e-2, num_vectors_per_token=2, init_text="red circle",
                                     caption_template="a photo of {token}, {filewords}")
    model = _model(tiny_checkpoints, model_cache_dir)
    encoder_before = {k: v.clone() for k, v in model.pipeline.text_encoder.state_dict().items()}
    unet_before = {k: v.clone() for k, v in model.pipeline.unet.state_dict().items()}
    initial = init_vectors(model, "red circle", 2)
    outcome, expected = _train(tmp_path, data, straight, model)
    assert outcome.last_step == 4 and expected.shape == initial.shape
    assert (expected - initial).abs().max() > 1e-4  # the vectors learned
    for key, value in model.pipeline.text_encoder.state_dict().items():
        assert torch.equal(value, encoder_before[key]), key  # the encoder (its embedding table too) is untouched
    assert all(torch.equal(v, unet_before[k]) for k, v in model.pipeline.unet.state_dict().items())
    assert model.pipeline.text_encoder.get_input_embeddings().weight.shape[0] == encoder_before[
        next(k for k in encoder_before if "token_embedding" in k)].shape[0]

    resumed = straight.model_copy(update={"name": "resumed"})
    control = JobControl()

    def stop(step: int, loss: float) -> None:
        if step == 2:
            control.cancel_event.set()

    first, _ = _train(tmp_path, data, resumed, _model(tiny_checkpoints, model_cache_dir), control, on_log=stop)
    assert first.stopped and first.last_step == 2
    second, got = _train(tmp_path, data, resumed, _model(tiny_checkpoints, model_cache_dir))
    assert second.last_step == 4 and second.steps_done == 2
    assert float((got - expected).abs().max()) <= 1e-6


def test_export_loads_through_the_embeddings_module(tiny_checkpoints, model_cache_dir, tmp_path) -> None:
    from safetensors import safe_open

    from modules.generation.addons.embeddings import EmbeddingLibrary, read_embedding, vectors_for

    model = _model(tiny_checkpoints, model_cache_dir)
    vectors = init_vectors(model, "a star", 3) + 0.5
    path = write_embedding(tmp_path / "embeddings" / "zwxstar.safetensors", vectors,
                           {"name": "zwxstar", "step": "3", "atelier_recipe": {"steps": 3}})
    with safe_open(str(path), "pt") as handle:
        assert list(handle.keys()) == ["emb_params"]
        assert handle.metadata()["step"] == "3" and handle.metadata()["atelier_recipe"] == '{"steps": 3}'
    embedding = read_embedding(path)
    assert embedding.count == 3 and torch.equal(embedding.vectors[""], vectors)
    assert vectors_for(model.pipeline, embedding) is not None  # fits the model it was made for
    assert EmbeddingLibrary((path.parent,)).used_in(["a photo of zwxstar"]) == {"zwxstar": path}


def test_train_embedding_job_and_the_prompt_that_uses_it(studio_factory) -> None:
    from modules.generation.addons.embeddings import read_embedding
    from modules.generation.requests import Txt2ImgRequest
    from modules.jobs.model import JobState
    from modules.jobs.submit import submit_job

    srv = studio_factory(("--nowebui",), prepare=lambda data, ckpt: _images(data / "train" / "blob"))
    ctx = srv.ctx
    created = submit_job(ctx, TrainEmbeddingRequest(name="zwxblob", steps=0, init_text="yellow square",
                                                    num_vectors_per_token=2), owner="t", source="test")
    ctx.queue.wait(created.id, 300)
    assert created.state is JobState.SUCCEEDED, created.error
    path = ctx.paths.embeddings_dir / "zwxblob.safetensors"
    start = read_embedding(path).vectors[""].clone()
    assert start.shape[0] == 2
    with pytest.raises(Exception, match="exists already"):
        submit_job(ctx, TrainEmbeddingRequest(name="zwxblob", steps=0), owner="t", source="test")
    with pytest.raises(Exception, match="dataset"):
        TrainEmbeddingRequest(name="x", steps=3)

    job = submit_job(ctx, TrainEmbeddingRequest(name="zwxblob", initial="file", dataset="train/blob", steps=3,
                                                learning_rate=5e-2), owner="t", source="test")
    ctx.queue.wait(job.id, 300)
    assert job.state is JobState.SUCCEEDED, job.error
    assert job.result["steps"] == 3 and job.result["vectors"] == 2
    trained = read_embedding(path).vectors[""]
    assert (trained - start).abs().max() > 1e-4

    def image(prompt: str) -> tuple[np.ndarray, str]:
        gen = submit_job(ctx, Txt2ImgRequest(prompt=prompt, steps=3, width=64, height=64, seed=5,
                                             sampler_name="Euler"), owner="t", source="test")
        ctx.queue.wait(gen.id, 120)
        assert gen.state is JobState.SUCCEEDED, gen.error
        return np.asarray(gen.result.images[0], dtype=np.int16), gen.result.infotexts[0]

    with_embedding, infotext = image("a photo of zwxblob")
    assert "TI hashes" in infotext and "zwxblob" in infotext
    path.rename(path.with_suffix(".off"))
    without, infotext = image("a photo of zwxblob")
    assert "TI hashes" not in infotext
    assert np.abs(with_embedding - without).max() > 0  # the word's vectors change the image
