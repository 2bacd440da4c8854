"""The A1111 API spine end to end: a real server, tiny real-architecture models, the PyPI
``webuiapi`` client, and bad input that must come back as clear 4xx answers."""

from __future__ import annotations

import base64
import io
import json
import shutil

import pytest
import webuiapi
from PIL import Image


SIZE = 64


@pytest.fixture(scope="module")
def server(studio_factory, tiny_model):
    """The tiny single file (loaded) and a diffusers folder of other weights in ``sub/``."""
    folder = tiny_model("sd1", fmt="diffusers", seed=2)
    return studio_factory(["--nowebui"], name="sdapi", own_ckpt_dir=True,
                          prepare=lambda data, ckpt_dir: shutil.copytree(folder, ckpt_dir / "sub" / folder.name))


@pytest.fixture()
def api(server) -> webuiapi.WebUIApi:
    return webuiapi.WebUIApi(host="127.0.0.1", port=server.port, steps=2)


def _gen(api: webuiapi.WebUIApi, **kw) -> webuiapi.WebUIApiResult:
    args = dict(prompt="a red circle", width=SIZE, height=SIZE, steps=2, seed=1234, sampler_name="Euler")
    args.update(kw)
    return api.txt2img(**args)


def test_webuiapi_txt2img_shapes(api: webuiapi.WebUIApi, server) -> None:
    result = _gen(api, batch_size=2)
    assert len(result.images) == 2 and result.images[0].size == (SIZE, SIZE)
    info = result.info
    assert info["seed"] == 1234 and info["all_seeds"] == [1234, 1235]
    assert len(info["infotexts"]) == 2
    text = info["infotexts"][0]
    assert text.startswith("a red circle\nSteps: 2, Sampler: Euler, Schedule type: ")
    assert "Seed: 1234, Size: 64x64, Model hash: " in text
    # the returned PNG carries the same infotext
    assert result.images[0].info.get("parameters") == text


def test_size_left_out_is_the_models_native_size(server) -> None:
    """A1111 would answer 512x512; the loaded model's native size is what a user means (64 for the
    embedded default, 1024 for SDXL), and `parameters` reports the size the job ran at."""
    native = tuple(server.ctx.models.active.model.native_size)
    with server.client() as http:
        r = http.post("/sdapi/v1/txt2img", json={"prompt": "a red circle", "steps": 1, "seed": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    image = Image.open(io.BytesIO(base64.b64decode(body["images"][0])))
    assert image.size == native
    assert (body["parameters"]["width"], body["parameters"]["height"]) == native
    assert f"Size: {native[0]}x{native[1]}" in json.loads(body["info"])["infotexts"][0]


def test_same_seed_same_image_bit_for_bit(api: webuiapi.WebUIApi) -> None:
    a = _gen(api, sampler_name="Euler a")
    b = _gen(api, sampler_name="Euler a")
    assert a.images[0].tobytes() == b.images[0].tobytes()
    c = _gen(api, sampler_name="Euler a", seed=99)
    assert a.images[0].tobytes() != c.images[0].tobytes()


def test_random_seed_and_variation(api: webuiapi.WebUIApi) -> None:
    r = _gen(api, seed=-1)
    assert r.info["seed"] >= 0
    v = _gen(api, subseed=5, subseed_strength=0.5)
    assert "Variation seed: 5, Variation seed strength: 0.5" in v.info["infotexts"][0]


def test_legacy_sampler_names(api: webuiapi.WebUIApi, server) -> None:
    with server.client() as http:
        r = http.post("/sdapi/v1/txt2img", json={"prompt": "x", "width": SIZE, "height": SIZE, "steps": 2,
                                                   "sampler_index": "DPM++ 2M Karras", "scheduler": "automatic"})
    assert r.status_code == 200, r.text
    info = json.loads(r.json()["info"])
    assert "Sampler: DPM++ 2M, Schedule type: Karras" in info["infotexts"][0]


def test_saved_output_and_png_info_round_trip(api: webuiapi.WebUIApi, server) -> None:
    result = _gen(api, save_images=True, seed=777)
    files = list((server.ctx.paths.outputs_dir / "txt2img-images").rglob("*-777.png"))
    assert files, "image was not saved under outputs/txt2img-images/<date>/NNNNN-777.png"
    name = files[0].name
    assert len(name.split("-")[0]) == 5 and name.split("-")[0].isdigit()
    saved = Image.open(files[0])
    assert saved.info["parameters"] == result.info["infotexts"][0]
    parsed = api.png_info(saved)
    assert parsed.info == result.info["infotexts"][0]
    assert parsed.parameters["Seed"] == "777" and parsed.parameters["Size-1"] == "64"


def test_models_listing_and_switch(api: webuiapi.WebUIApi, server) -> None:
    models = api.get_sd_models()
    assert len(models) == 3 and "atelier-shapes-v1" in {m["model_name"] for m in models}  # + the shipped default
    for m in models:
        assert set(m) == {"title", "model_name", "hash", "sha256", "filename", "config"}
    loaded = [m for m in models if m["hash"]]
    assert loaded and loaded[0]["title"].endswith(f"[{loaded[0]['hash']}]")
    other = [m for m in models if not m["filename"].endswith(".safetensors")]
    api.util_set_model(other[0]["title"])
    assert api.get_options()["sd_model_checkpoint"] == other[0]["title"]
    out = _gen(api)
    assert out.images[0].size == (SIZE, SIZE)
    api.util_set_model(loaded[0]["title"])
    assert api.util_get_current_model() == loaded[0]["title"]


def test_listing_endpoints(api: webuiapi.WebUIApi) -> None:
    names = {s["name"] for s in api.get_samplers()}
    assert {"Euler a", "Euler", "DPM++ 2M", "DPM++ SDE", "DDIM", "UniPC", "LCM"} <= names
    assert {"karras", "automatic"} <= {s["name"] for s in api.get_schedulers()}
    progress = api.get_progress()
    assert progress["progress"] == 0 and progress["state"]["job_count"] == 0
    assert api.interrupt() == {}


@pytest.mark.parametrize("body, status, fragment", [
    ({"width": 64, "height": 64, "steps": 2, "enable_hr": True, "hr_upscaler": "Nope"}, 422, "Nope"),
    ({"width": 64, "height": 64, "steps": 2, "sampler_name": "Nope Sampler"}, 400, "sampler"),
    ({"width": 64, "height": 64, "steps": -3}, 422, "steps"),
    ({"width": 64, "height": 64, "steps": 2, "override_settings": {"sd_model_checkpoint": "missing.safetensors"}}, 404, "missing"),
])
def test_bad_requests_are_clear_4xx(server, body: dict, status: int, fragment: str) -> None:
    with server.client() as http:
        r = http.post("/sdapi/v1/txt2img", json=body)
        assert r.status_code == status, r.text
        detail = r.json()["detail"]
        assert fragment.lower() in detail.lower() and "Traceback" not in r.text
        assert http.get("/internal/ping").status_code == 200


def test_empty_and_malformed_bodies(server) -> None:
    with server.client() as http:
        r = http.post("/sdapi/v1/txt2img")
        assert r.status_code == 422 and "request body" in r.json()["detail"]
        r = http.post("/sdapi/v1/txt2img", content=b"{oops", headers={"content-type": "application/json"})
        assert r.status_code == 422
        r = http.post("/sdapi/v1/png-info", json={"image": base64.b64encode(b"not an image").decode()})
        assert r.status_code == 400 and "image" in r.json()["detail"].lower()
        r = http.post("/sdapi/v1/options", json={"no_such_option": 1})  # ignored and named, as A1111 options are
        assert r.status_code == 200 and r.headers["X-Atelier-Ignored-Options"] == "no_such_option"
        r = http.post("/sdapi/v1/options", json={"show_progress_every_n_steps": "often"})
        assert r.status_code == 400 and "show_progress_every_n_steps" in r.json()["detail"]
