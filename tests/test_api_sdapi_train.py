"""A1111's ``POST /sdapi/v1/create/embedding`` and ``/sdapi/v1/train/embedding`` (issue 27): A1111's request
shape mapped to the ``train_embedding`` job, A1111's ``{"info": ...}`` answers, unknown or unsupported
fields refused (422) and fields without effect here reported as warnings."""

from __future__ import annotations

import pytest
from PIL import Image

pytestmark = pytest.mark.timeout(900)

#: A1111's train/embedding arguments as its own UI sends them (defaults of its Train tab)
A1111_TRAIN = {
    "id_task": "task(abc)", "embedding_name": "apiword", "learn_rate": "0.05", "batch_size": 1, "gradient_step": 1,
    "data_root": "train/blob", "log_directory": "textual_inversion", "training_width": 64, "training_height": 64,
    "varsize": False, "steps": 2, "clip_grad_mode": "disabled", "clip_grad_value": "0.1", "shuffle_tags": False,
    "tag_drop_out": 0, "latent_sampling_method": "once", "use_weight": False, "create_image_every": 0,
    "save_embedding_every": 0, "template_filename": "subject_filewords.txt",
    "save_image_with_stored_embedding": True, "preview_from_txt2img": False, "preview_prompt": "",
    "preview_negative_prompt": "", "preview_steps": 20, "preview_sampler_name": "Euler a", "preview_cfg_scale": 7,
    "preview_seed": -1, "preview_width": 512, "preview_height": 512}


def _images(folder):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(2):
        picture = Image.new("RGB", (64, 64), (30, 60 + 40 * i, 170))
        picture.paste((240, 210, 30), (16, 12 + 4 * i, 48, 50))
        picture.save(folder / f"{i}.png")


@pytest.fixture(scope="module")
def server(studio_factory):
    return studio_factory(("--nowebui",), prepare=lambda data, ckpt: _images(data / "train" / "blob"))


def test_create_then_train_an_embedding_in_a1111_shape(server) -> None:
    from modules.generation.addons.embeddings import read_embedding

    path = server.ctx.paths.embeddings_dir / "apiword.safetensors"
    with server.client() as http:
        answer = http.post("/sdapi/v1/create/embedding",
                           json={"name": "apiword", "num_vectors_per_token": 2, "overwrite_old": False,
                                 "init_text": "yellow"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["info"].startswith("create embedding filename: ") and "apiword.safetensors" in answer.text
        created = read_embedding(path).vectors[""].clone()
        assert created.shape[0] == 2

        again = http.post("/sdapi/v1/create/embedding", json={"name": "apiword", "num_vectors_per_token": 2})
        assert again.status_code == 200 and again.json()["info"].startswith("create embedding error: ")
        assert "exists already" in again.json()["info"]

        answer = http.post("/sdapi/v1/train/embedding", json=A1111_TRAIN)
        assert answer.status_code == 200, answer.text
        info = answer.json()["info"]
        assert info.startswith("train embedding complete: filename: ") and "error: None" in info, info
        assert "log_directory" in info and "preview_" in info and "id_task" in info  # said, not ignored
    trained = read_embedding(path).vectors[""]
    assert trained.shape == created.shape and (trained - created).abs().max() > 1e-4
    with server.client() as http:
        missing = http.post("/sdapi/v1/train/embedding", json={**A1111_TRAIN, "embedding_name": "nosuch"})
    assert missing.status_code == 200 and "create it first" in missing.json()["info"]


@pytest.mark.parametrize("change, message", [
    ({"learn_rate": "0.005:100, 1e-3:1000"}, "learning-rate schedules"),
    ({"gradient_step": 4}, "gradient accumulation"),
    ({"training_width": 64, "training_height": 96}, "must be equal"),
    ({"varsize": True}, "varsize"),
    ({"shuffle_tags": True}, "shuffle_tags"),
    ({"tag_drop_out": 0.1}, "tag_drop_out"),
    ({"clip_grad_mode": "value"}, "clip_grad_mode"),
    ({"template_filename": "mine.txt"}, "template_filename"),
    ({"not_an_a1111_field": 1}, "unknown field"),
])
def test_unsupported_train_fields_are_refused(server, change, message) -> None:
    with server.client() as http:
        answer = http.post("/sdapi/v1/train/embedding", json={**A1111_TRAIN, **change})
    assert answer.status_code == 422, answer.text
    assert message in answer.text


def test_create_refuses_unknown_fields_and_bad_names(server) -> None:
    with server.client() as http:
        unknown = http.post("/sdapi/v1/create/embedding", json={"name": "x1", "vectors": 2})
        bad = http.post("/sdapi/v1/create/embedding", json={"name": "../x"})
    assert unknown.status_code == 422 and "vectors" in unknown.text
    assert bad.status_code == 422 and "name" in bad.text
