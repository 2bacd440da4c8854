"""Replays of what real A1111 clients send, against a running studio with the embedded default model
(64 px native, a 3-layer text encoder) and a tiny SD 1.x checkpoint to switch to. Each request answers
200 with a PNG of the size the info says, or a 4xx naming the limit; never a 5xx.

The request sequences were written from the clients' sources:

* **Open WebUI 0.12.4**, ``backend/open_webui/routers/images.py`` (engine "automatic1111"): the URL check
  and model reads are ``GET /sdapi/v1/options`` / ``sd-models``; a model switch GETs the options and posts
  the *whole* dict back with a new ``sd_model_checkpoint``; generation is ``txt2img`` with ``prompt``,
  ``batch_size``, any ``width``/``height`` typed as "WxH", ``steps``, ``negative_prompt`` and the admin's
  ``AUTOMATIC1111_PARAMS`` merged in; auth is an ``authorization: Basic ...`` header.
* **SillyTavern 1.19.0**, ``src/endpoints/stable-diffusion.js`` (server) and
  ``public/scripts/extensions/stable-diffusion/index.js`` (``generateAutoImage``): Basic auth built from its
  ``auth`` string, the listings (upscalers + latent modes, sd-vae and Forge's sd-modules, samplers,
  schedulers, sd-models), ``set-model`` = POST ``{sd_model_checkpoint}`` then polling ``progress`` until idle,
  and a ``txt2img`` body that still carries ``url`` and ``auth``, ``restore_faces``, ``hr_upscaler``
  (its list starts with "None"), ``clip_skip`` (slider 1..12) in ``override_settings`` and at top level, and
  ADetailer's ``alwayson_scripts`` entry when its face option is on; sizes from presets such as 960x540.
* **stable-diffusion-api 0.0.5** (npm, jaschahuisman/sd-api, ``src/lib/StableDiffusionApi.ts``): axios with
  Basic auth; ``txt2img``/``img2img`` bodies that fill every A1111 field with the client's own defaults
  (``eta`` 1.0, ``s_tmax`` 0, ``seed_resize_from_*`` 0, ``image_cfg_scale`` 1.5, ``mask`` null,
  ``alwayson_scripts: {"ControlNet": {"args": []}}``, ``use_deprecated_controlnet``), ``setModel`` by
  ``model_name``, ``waitForReady`` polling ``progress?skipCurrentImage=false``, the listings and extras.

Sizes are the clients' scaled down (CPU time) but still not multiples of 8.
"""

from __future__ import annotations

import base64
import io
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from modules.api.sdapi_options import IGNORED_HEADER
from tests.helpers.server import RunningServer

pytestmark = pytest.mark.slow

DEFAULT = Path(__file__).resolve().parents[1] / "models" / "Stable-diffusion" / "atelier-shapes-v1.safetensors"
USERS = {"openwebui": "ow-pass", "tavern": "st-pass", "sdapi": "js-pass"}
STEPS = 4


def basic(user: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{USERS[user]}".encode()).decode()
    return {"authorization": f"Basic {token}"}


def ok(response: httpx.Response) -> httpx.Response:
    """Every answer: below 500; a refusal names what it refuses."""
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.json().get("detail"), response.text
    return response


def png(b64: str) -> Image.Image:
    raw = base64.b64decode(b64)
    assert raw.startswith(b"\x89PNG"), "A1111 answers raw base64 PNG"
    return Image.open(io.BytesIO(raw))


def generated(response: httpx.Response, size: tuple[int, int],
              first_pass: tuple[int, int] | None = None) -> tuple[Image.Image, dict[str, Any]]:
    """The first image of a 200 answer, checked against ``size`` and the infotext's size (A1111's ``Size`` is the
    first pass's, ``first_pass``, with hires fix)."""
    assert response.status_code == 200, response.text
    body = response.json()
    info = json.loads(body["info"])
    image = png(body["images"][0])
    assert image.size == size
    text_size = first_pass or size
    assert f"Size: {text_size[0]}x{text_size[1]}" in info["infotexts"][0]
    assert image.info["parameters"] == info["infotexts"][0]
    return image, info


@pytest.fixture(scope="module")
def studio(studio_factory) -> RunningServer:
    if not DEFAULT.is_file():
        pytest.skip("the shipped default model is missing")
    users = ",".join(f"{u}:{p}" for u, p in USERS.items())
    return studio_factory(["--nowebui", "--api-auth", users], models=(DEFAULT, "sd1"), name="clients",
                          own_ckpt_dir=True)


def _switch_like_open_webui(http: httpx.Client, model: str) -> None:
    """``set_image_model``: GET the options, post the whole dict back with the new checkpoint."""
    options = ok(http.get("/sdapi/v1/options")).json()
    if model != options["sd_model_checkpoint"]:
        options["sd_model_checkpoint"] = model
        r = ok(http.post("/sdapi/v1/options", json=options))
        assert r.status_code == 200 and r.json() is None
        assert IGNORED_HEADER not in r.headers  # the post-back changes nothing but the model


def test_open_webui(studio: RunningServer) -> None:
    with studio.client(headers=basic("openwebui")) as http:
        assert ok(http.get("/sdapi/v1/options")).status_code == 200                      # verify_url
        models = [{"id": m["title"], "name": m["model_name"]} for m in ok(http.get("/sdapi/v1/sd-models")).json()]
        default = ok(http.get("/sdapi/v1/options")).json()["sd_model_checkpoint"]        # get_image_model
        tiny = next(m["id"] for m in models if not m["id"].startswith(DEFAULT.stem))

        _switch_like_open_webui(http, tiny)
        assert ok(http.get("/sdapi/v1/options")).json()["sd_model_checkpoint"].split(" [")[0] == tiny.split(" [")[0]
        _switch_like_open_webui(http, default)
        assert ok(http.get("/sdapi/v1/options")).json()["sd_model_checkpoint"].startswith(DEFAULT.stem)

        # image_generations, size "100x60" (any WxH is accepted there) with AUTOMATIC1111_PARAMS merged in
        params = {"cfg_scale": "7.0", "sampler_name": "Euler a",
                  "override_settings": {"sd_vae": "vae-ft-mse-840000-ema-pruned.safetensors"}}  # not installed
        data = {"prompt": "a red circle", "batch_size": 1, "width": 100, "height": 60, "steps": STEPS,
                "negative_prompt": "blurry", **params}
        r = ok(http.post("/sdapi/v1/txt2img", json=data))
        _, info = generated(r, (96, 64))
        assert (info["width"], info["height"]) == (96, 64) and info["cfg_scale"] == 7.0
        vae_note, size_note = info["warnings"]
        assert "vae-ft-mse" in vae_note and "100x60" in size_note and "generated at 96x64" in size_note


def test_open_webui_model_switch_never_half_applies(studio: RunningServer) -> None:
    with studio.client(headers=basic("openwebui")) as http:
        before = ok(http.get("/sdapi/v1/options")).json()
        tiny = next(m["title"] for m in ok(http.get("/sdapi/v1/sd-models")).json()
                    if not m["title"].startswith(DEFAULT.stem))
        r = ok(http.post("/sdapi/v1/options", json={**before, "sd_model_checkpoint": tiny,
                                                   "show_progress_every_n_steps": "often"}))
        assert r.status_code == 400 and "show_progress_every_n_steps" in r.json()["detail"]
        after = ok(http.get("/sdapi/v1/options")).json()
        assert after["sd_model_checkpoint"] == before["sd_model_checkpoint"]  # the model did not switch
        # keys the studio keeps read-only or does not have: ignored, named, never a failure
        r = ok(http.post("/sdapi/v1/options", json={"sd_checkpoint_hash": "0" * 64, "img2img_fix_steps": True}))
        assert r.status_code == 200 and r.headers[IGNORED_HEADER] == "sd_checkpoint_hash, img2img_fix_steps"


def _sillytavern_body(studio: RunningServer, **settings: Any) -> dict[str, Any]:
    """``generateAutoImage``'s payload, as the server endpoint forwards it (url and auth included)."""
    body: dict[str, Any] = {
        "url": studio.base_url, "auth": f"tavern:{USERS['tavern']}",
        "prompt": "best quality, absurdres, aesthetic, a red circle", "negative_prompt": "lowres, bad anatomy",
        "sampler_name": "Euler a", "scheduler": "automatic", "steps": STEPS, "cfg_scale": 7,
        "width": 64, "height": 64, "restore_faces": False, "enable_hr": False, "hr_upscaler": "None",
        "hr_scale": 2.0, "hr_additional_modules": [], "denoising_strength": 0.7, "hr_second_pass_steps": 0,
        "override_settings": {"CLIP_stop_at_last_layers": 1}, "override_settings_restore_afterwards": True,
        "clip_skip": 1, "save_images": True, "send_images": True, "do_not_save_grid": False,
        "do_not_save_samples": False,
    }
    clip_skip = settings.pop("clip_skip", None)
    if clip_skip is not None:
        body["override_settings"]["CLIP_stop_at_last_layers"] = body["clip_skip"] = clip_skip
    if settings.pop("adetailer_face", False):
        body["alwayson_scripts"] = {"ADetailer": {"args": [True, True, {"ad_model": "face_yolov8n.pt"}]}}
    body.update(settings)
    return body


def _sillytavern_generate(http: httpx.Client, body: dict[str, Any]) -> httpx.Response:
    options = ok(http.get("/sdapi/v1/options")).json()
    if "forge_preset" not in options:  # the server endpoint strips Forge's key for A1111
        body.get("override_settings", {}).pop("forge_additional_modules", None)
    response = ok(http.post("/sdapi/v1/txt2img", json=body))
    assert ok(http.post("/sdapi/v1/interrupt")).json() == {}  # sent when the browser hangs up; harmless after
    return response


def test_sillytavern(studio: RunningServer) -> None:
    with studio.client(headers=basic("tavern")) as http:
        assert ok(http.get("/sdapi/v1/options")).status_code == 200                             # /ping
        upscalers = [u["name"] for u in ok(http.get("/sdapi/v1/upscalers")).json()]
        latent = [u["name"] for u in ok(http.get("/sdapi/v1/latent-upscale-modes")).json()]
        upscalers[1:1] = latent                                                               # "0 = None, ..."
        assert upscalers[0] == "None"
        assert ok(http.get("/sdapi/v1/sd-vae")).status_code == 200
        ok(http.get("/sdapi/v1/sd-modules"))                     # Forge's listing: a 404 here, allSettled there
        samplers = [s["name"] for s in ok(http.get("/sdapi/v1/samplers")).json()]
        assert "Euler a" in samplers and ok(http.get("/sdapi/v1/schedulers")).json()
        models = [m["title"] for m in ok(http.get("/sdapi/v1/sd-models")).json()]
        model = ok(http.get("/sdapi/v1/options")).json()["sd_model_checkpoint"]                # /get-model
        assert model in models

        r = ok(http.post("/sdapi/v1/options", json={"sd_model_checkpoint": model}))            # /set-model
        assert r.status_code == 200
        for _ in range(10):
            progress = ok(http.get("/sdapi/v1/progress")).json()
            if progress["progress"] == 0.0 and progress["state"]["job_count"] == 0:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the studio never went idle after set-model")

        # the 960x540 preset, scaled down; clip skip 12 on a 3-layer encoder; face restore and ADetailer on
        body = _sillytavern_body(studio, width=122, height=69, clip_skip=12, restore_faces=True, adetailer_face=True)
        body["prompt"] = "<lora:add_detail:0.5>, " + body["prompt"]  # the character's LoRA, not installed here
        r = _sillytavern_generate(http, body)
        image, info = generated(r, (120, 72))
        assert USERS["tavern"] not in r.text and "auth" not in r.json()["parameters"]
        assert "url" not in r.json()["parameters"]
        assert info["clip_skip"] == 3 and "Clip skip: 3" in info["infotexts"][0]
        warnings = " | ".join(info["warnings"])
        assert "restore_faces" in warnings and "'ADetailer'" in warnings, warnings
        assert "clip skip 12" in warnings and "3 layers" in warnings and "generated at 120x72" in warnings
        assert "<lora:add_detail>" in warnings and "<lora" not in info["infotexts"][0]

        # hires fix with SillyTavern's default upscaler "None": a plain resize, then the second pass
        body = _sillytavern_body(studio, width=66, height=66, enable_hr=True, hr_scale=1.5, hr_second_pass_steps=2)
        image, info = generated(_sillytavern_generate(http, body), (96, 96), first_pass=(64, 64))
        assert "Hires upscaler: None" in info["infotexts"][0] and info["width"] == 64

        # the extension's out-of-the-box sampler and schedule (DDIM, normal): an image or a refusal naming it
        body = _sillytavern_body(studio, sampler_name="DDIM", scheduler="normal")
        r = _sillytavern_generate(http, body)
        if r.status_code == 200:
            generated(r, (64, 64))


def _sd_api_txt2img(**options: Any) -> dict[str, Any]:
    """``StableDiffusionApi.txt2img``: every field filled with the client's defaults (defaultSampler 'Euler a')."""
    get = options.get
    return {
        "enable_hr": get("enable_hr", False), "hr_scale": get("hr_scale", 2),
        "hr_upscaler": get("hr_upscaler", "Latent"),
        "hr_second_pass_steps": 0, "hr_resize_x": 0, "hr_resize_y": 0, "denoising_strength": 0.7,
        "firstphase_width": 0, "firstphase_height": 0, "prompt": get("prompt", ""), "styles": get("styles", []),
        "seed": get("seed", -1),
        "subseed": -1, "subseed_strength": 0.0, "seed_resize_from_h": 0, "seed_resize_from_w": 0, "batch_size": 1,
        "n_iter": 1, "steps": get("steps", 20), "cfg_scale": 7.0, "width": get("width", 512),
        "height": get("height", 512), "restore_faces": False, "tiling": False, "do_not_save_samples": False,
        "do_not_save_grid": False, "negative_prompt": "", "eta": 1.0, "s_churn": 0, "s_tmax": 0, "s_tmin": 0,
        "s_noise": 1, "override_settings": {}, "override_settings_restore_afterwards": True, "script_args": [],
        "script_name": None, "send_images": True, "save_images": False,
        "alwayson_scripts": {"ControlNet": {"args": []}},
        "sampler_name": get("sampler_name", "Euler a"), "use_deprecated_controlnet": False,
    }


def _sd_api_img2img(init_image: str, **options: Any) -> dict[str, Any]:
    """``StableDiffusionApi.img2img``'s body."""
    body = {key: value for key, value in _sd_api_txt2img(**options).items()
            if not key.startswith(("hr_", "enable_hr", "firstphase"))}
    body.update(init_images=[init_image], resize_mode=0, denoising_strength=0.75, image_cfg_scale=1.5, mask=None,
                mask_blur=4, inpainting_fill=0, inpaint_full_res=True, inpaint_full_res_padding=0,
                inpainting_mask_invert=0, initial_noise_multiplier=1, include_init_images=False)
    return body


def test_stable_diffusion_api_js_client(studio: RunningServer) -> None:
    with studio.client(headers=basic("sdapi")) as http:
        for path in ("/sdapi/v1/cmd-flags", "/sdapi/v1/samplers", "/sdapi/v1/upscalers", "/sdapi/v1/hypernetworks",
                     "/sdapi/v1/face-restorers", "/sdapi/v1/realesrgan-models", "/sdapi/v1/prompt-styles"):
            assert ok(http.get(path)).status_code == 200, path
        assert ok(http.post("/sdapi/v1/refresh-checkpoints")).status_code == 200
        names = [m["model_name"] for m in ok(http.get("/sdapi/v1/sd-models")).json()]
        assert ok(http.post("/sdapi/v1/options", json={"sd_model_checkpoint": DEFAULT.stem})).status_code == 200
        assert DEFAULT.stem in names
        progress = ok(http.get("/sdapi/v1/progress?skipCurrentImage=false")).json()               # waitForReady
        assert progress["progress"] == 0.0 and progress["state"]["job_count"] == 0

        r = ok(http.post("/sdapi/v1/txt2img", json=_sd_api_txt2img(prompt="a blue square", steps=STEPS, width=70,
                                                                     height=70, seed=5, styles=["cinematic"])))
        image, info = generated(r, (72, 72))
        style_note, size_note = info["warnings"]  # a style A1111 does not have is passed over there too
        assert "generated at 72x72" in size_note and "'cinematic'" in style_note
        init = r.json()["images"][0]

        r = ok(http.post("/sdapi/v1/img2img", json=_sd_api_img2img(init, prompt="a blue square", steps=STEPS,
                                                                     width=70, height=70, seed=5)))
        generated(r, (72, 72))
        assert r.json()["parameters"]["init_images"] is None

        extra = {"image": init, "resize_mode": 0, "show_extras_results": True, "gfpgan_visibility": 0,
                 "codeformer_weight": 0, "upscaling_resize": 2, "upscaling_resize_w": 512, "upscaling_resize_h": 512,
                 "upscaling_resize_crop": True, "upscaler_1": "None", "upscaler_2": "None",
                 "extras_upscaler_2_visibility": 0, "upscale_first": False}
        r = ok(http.post("/sdapi/v1/extra-single-image", json=extra))
        assert r.status_code == 200 and png(r.json()["image"]).size[0] in (72, 144)
        r = ok(http.post("/sdapi/v1/png-info", json={"image": init}))
        assert r.status_code == 200 and r.json()["parameters"]["Size-1"] == "72"
