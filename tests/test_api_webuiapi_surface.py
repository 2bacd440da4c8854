"""Every ``/sdapi/v1`` endpoint that ``webuiapi`` 0.9.17 uses, driven by ``webuiapi`` itself against a
real server with a tiny model (a1111.md §8.3)."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from pathlib import Path

import pytest
import webuiapi
from PIL import Image, PngImagePlugin


SIZE = 64


def _surface_files(data: Path, ckpt_dir: Path) -> None:
    lora_dir = data / "models" / "Lora"
    lora_dir.mkdir(parents=True)
    (lora_dir / "tiny_style.safetensors").write_bytes(_safetensors_with_metadata({"ss_output_name": "tiny_style"}))
    (data / "models" / "VAE").mkdir(parents=True)
    (data / "models" / "VAE" / "tiny-vae.safetensors").write_bytes(_safetensors_with_metadata({}))
    (data / "styles.csv").write_text("name,prompt,negative_prompt\nflat,\"{prompt}, flat colours\",blurry\n",
                                     encoding="utf-8")


@pytest.fixture(scope="module")
def server(studio_factory):
    return studio_factory(["--nowebui", "--api-key", "surface-test-key"], name="surface", own_ckpt_dir=True,
                          prepare=_surface_files)


@pytest.fixture()
def api(server) -> webuiapi.WebUIApi:
    client = webuiapi.WebUIApi(host="127.0.0.1", port=server.port, steps=2)
    client.session.headers["X-API-Key"] = "surface-test-key"
    return client


def _safetensors_with_metadata(metadata: dict[str, str]) -> bytes:
    header = json.dumps({"__metadata__": metadata, "w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})
    raw = header.encode()
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw + b"\0\0\0\0"


def _picture(size: int = 32) -> Image.Image:
    image = Image.new("RGB", (size, size), (40, 85, 225))
    for x in range(size // 4, size // 2):
        for y in range(size // 4, size // 2):
            image.putpixel((x, y), (220, 35, 35))
    return image


def test_scripts_probe_and_txt2img(api: webuiapi.WebUIApi) -> None:
    scripts = api.get_scripts()  # the built-in selectable scripts, then the always-on ones, lower-case
    assert set(scripts) == {"txt2img", "img2img"} and all(names[-1] == "controlnet" for names in scripts.values())
    assert all(name == name.lower() for names in scripts.values() for name in names)
    assert not api.has_controlnet
    result = api.txt2img(prompt="a red circle", width=SIZE, height=SIZE, steps=2, seed=7, styles=["flat"])
    assert result.image.size == (SIZE, SIZE)
    assert result.info["all_seeds"] == [7]
    assert result.info["infotexts"][0].startswith("a red circle, flat colours\nNegative prompt: blurry\n")
    assert result.parameters["prompt"] == "a red circle"


def test_txt2img_hires_fix(api: webuiapi.WebUIApi) -> None:
    result = api.txt2img(prompt="a red circle", width=SIZE, height=SIZE, steps=2, seed=7, enable_hr=True,
                         hr_scale=1.5, hr_upscaler="Latent", hr_second_pass_steps=2, denoising_strength=0.5)
    assert result.image.size == (96, 96)
    assert "Hires upscaler: Latent" in result.info["infotexts"][0]
    assert result.info["denoising_strength"] == 0.5


def test_img2img_and_inpaint(api: webuiapi.WebUIApi, server) -> None:
    result = api.img2img(images=[_picture(SIZE)], prompt="a red square", steps=4, width=SIZE, height=SIZE,
                         denoising_strength=0.5, seed=3)
    assert result.image.size == (SIZE, SIZE) and result.info["all_seeds"] == [3]
    assert "Denoising strength: 0.5" in result.info["infotexts"][0]
    assert result.parameters["init_images"] is None  # A1111 leaves the images out of the echo
    mask = Image.new("L", (SIZE, SIZE), 0)
    mask.paste(255, (16, 16, 48, 48))
    inpainted = api.img2img(images=[_picture(SIZE)], mask_image=mask, prompt="a star", steps=4, seed=4,
                            width=SIZE, height=SIZE, inpainting_fill=1)
    assert inpainted.image.size == (SIZE, SIZE) and "Mask blur: 4" in inpainted.info["infotexts"][0]
    with server.client(headers={"X-API-Key": "surface-test-key"}) as http:
        r = http.post("/sdapi/v1/img2img", json={"prompt": "x", "steps": 2})
        assert r.status_code == 404 and r.json()["detail"] == "Init image not found"
        r = http.post("/sdapi/v1/img2img", json={"prompt": "x", "steps": 2, "init_images": ["bm90IGFuIGltYWdl"]})
        assert r.status_code == 400 and "init image 1" in r.json()["detail"]


def test_extra_single_image_lanczos_and_nearest(api: webuiapi.WebUIApi) -> None:
    image = _picture(32)
    image.info["parameters"] = "a red square\nSteps: 2, Seed: 5, Size: 32x32"
    scaled = api.extra_single_image(image, upscaler_1="Lanczos", upscaling_resize=2)
    assert scaled.image.size == (64, 64)
    assert "Postprocess upscaler: Lanczos" in scaled.info
    assert scaled.image.info.get("postprocessing") == "Postprocess upscale by: 2, Postprocess upscaler: Lanczos"
    to_size = api.extra_single_image(image, resize_mode=1, upscaling_resize_w=48, upscaling_resize_h=40,
                                     upscaler_1="Nearest")
    assert to_size.image.size == (48, 40)
    unchanged = api.extra_single_image(image, upscaler_1="None")
    assert unchanged.image.size == (32, 32)
    with pytest.raises(RuntimeError) as info:
        api.extra_single_image(image, upscaler_1="ESRGAN_4x")
    assert info.value.args[0] == 400 and "Upscaler not found" in info.value.args[1]


def test_extra_batch_images(api: webuiapi.WebUIApi) -> None:
    result = api.extra_batch_images([_picture(16), _picture(24)], upscaler_1="Nearest", upscaling_resize=3)
    assert [im.size for im in result.images] == [(48, 48), (72, 72)]
    # nearest-neighbour scaling keeps the exact colours
    assert result.images[0].convert("RGB").getpixel((0, 0)) == (40, 85, 225)


def test_png_info_reads_generated_image(api: webuiapi.WebUIApi) -> None:
    made = api.txt2img(prompt="a blue star", width=SIZE, height=SIZE, steps=2, seed=11)
    parsed = api.png_info(made.image)
    assert parsed.info == made.info["infotexts"][0]
    assert parsed.parameters["Seed"] == "11"


def test_interrogate_without_and_with_the_classifier(api: webuiapi.WebUIApi, server) -> None:
    folder = server.ctx.paths.data_dir / "models" / "classifier" / "atelier-shapes-vit"
    repo_classifier = server.ctx.paths.repo_root / "models" / "classifier" / "atelier-shapes-vit"
    if not repo_classifier.exists():
        with pytest.raises(RuntimeError) as info:
            api.interrogate(_picture(64))
        status, text = info.value.args
        assert status == 404 and json.loads(text)["detail"].startswith("Model not found")
    _save_tiny_classifier(folder)
    caption = api.interrogate(_picture(64)).info
    assert caption.startswith(("a ", "an ")) and caption.endswith(" background")
    tags = api.interrogate(_picture(64), model="deepdanbooru").info
    assert tags.count(",") == 4 and tags.endswith(" background")
    with pytest.raises(RuntimeError) as info:
        api.interrogate(_picture(64), model="blip2")
    assert info.value.args[0] == 404 and "Model not found" in info.value.args[1]


def _save_tiny_classifier(folder: Path) -> None:
    from modules.embedded.classifier import build_classifier, build_processor

    config = {"image_size": 32, "patch_size": 16, "num_channels": 3, "hidden_size": 16, "num_hidden_layers": 1,
              "num_attention_heads": 2, "intermediate_size": 16, "hidden_dropout_prob": 0.0,
              "attention_probs_dropout_prob": 0.0}
    build_classifier(config).save_pretrained(folder)
    build_processor(32).save_pretrained(folder)


def test_options_and_cmd_flags(api: webuiapi.WebUIApi, server) -> None:
    options = api.get_options()
    assert options["sd_model_checkpoint"] in api.util_get_model_names()
    assert api.set_options({"show_progress_every_n_steps": 3}) is None
    assert api.get_options()["show_progress_every_n_steps"] == 3
    flags = api.get_cmd_flags()
    assert flags["nowebui"] is True and flags["data_dir"] == str(server.ctx.paths.data_dir)
    assert flags["api_keys"] == "***" and "surface-test-key" not in json.dumps(flags)


def test_listings(api: webuiapi.WebUIApi, server) -> None:
    assert "Euler a" in api.util_get_sampler_names()
    assert "karras" in api.util_get_scheduler_names()
    assert [u["name"] for u in api.get_upscalers()] == ["None", "Lanczos", "Nearest"]
    assert [m["name"] for m in api.get_latent_upscale_modes()][:2] == ["Latent", "Latent (antialiased)"]
    assert api.get_hypernetworks() == [] and api.get_face_restorers() == [] and api.get_realesrgan_models() == []
    assert api.get_prompt_styles() == [{"name": "flat", "prompt": "{prompt}, flat colours", "negative_prompt": "blurry"}]
    assert api.get_embeddings() == {"loaded": {}, "skipped": {}}
    vaes = api.get_sd_vae()
    assert [v["model_name"] for v in vaes] == ["tiny-vae.safetensors"]
    loras = api.get_loras()
    assert loras == [{"name": "tiny_style", "alias": "tiny_style", "path": loras[0]["path"],
                      "metadata": {"ss_output_name": "tiny_style"}}]
    memory = api.get_memory()
    assert memory["ram"]["total"] > memory["ram"]["used"] > 0 and "cuda" in memory
    models = {m["model_name"]: m for m in api.get_sd_models()}
    assert set(models) <= {"tiny-sd1", "atelier-shapes-v1"}  # the shipped default is always listed
    assert api.refresh_checkpoints() is None
    assert api.util_get_current_model() == models["tiny-sd1"]["title"] and models["tiny-sd1"]["hash"]
    api.util_set_model("tiny-sd1")


def test_progress_interrupt_and_skip_while_running(api: webuiapi.WebUIApi, server) -> None:
    holder: dict = {}

    def run() -> None:
        holder["result"] = api.txt2img(prompt="a green heart", width=SIZE, height=SIZE, steps=150, seed=1, n_iter=3)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.time() + 60
    while time.time() < deadline:
        progress = api.get_progress()
        if progress["state"]["sampling_step"] > 0:
            break
        time.sleep(0.02)
    assert 0 < progress["progress"] < 1 and progress["state"]["job_count"] == 3
    assert api.skip() is None
    assert api.interrupt() == {}
    thread.join(60)
    result = holder["result"]
    assert 1 <= len(result.images) < 3  # interrupted: keeps what it made, as A1111 does
    api.util_wait_for_ready(check_interval=0.05)
    assert api.get_progress()["progress"] == 0


def test_data_uri_and_raw_base64_inputs(server) -> None:
    buffer = io.BytesIO()
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "x\nSteps: 3, Seed: 9, Size: 16x16")
    _picture(16).save(buffer, format="PNG", pnginfo=info)
    raw = base64.b64encode(buffer.getvalue()).decode()
    with server.client(headers={"X-API-Key": "surface-test-key"}) as http:
        for image in (raw, "data:image/png;base64," + raw):
            r = http.post("/sdapi/v1/png-info", json={"image": image})
            assert r.status_code == 200 and r.json()["parameters"]["Steps"] == "3"


def test_lora_in_prompt_through_the_api(api: webuiapi.WebUIApi, server) -> None:
    from tests.fixtures.tiny_networks import kohya_lora_state, write_safetensors

    pipe = server.ctx.models.active.model.pipeline
    write_safetensors(server.ctx.paths.lora_dir / "detail.safetensors", kohya_lora_state(pipe))
    assert "detail" in [lora["name"] for lora in api.get_loras()]
    plain = api.txt2img(prompt="a red circle", width=SIZE, height=SIZE, steps=2, seed=21)
    with_lora = api.txt2img(prompt="a red circle <lora:detail:1>", width=SIZE, height=SIZE, steps=2, seed=21)
    assert "Lora hashes: \"detail: " in with_lora.info["infotexts"][0]
    assert plain.image.tobytes() != with_lora.image.tobytes()
    # A1111 generates without a LoRA it cannot find ("Lora not found"); info's warnings name it
    missing = api.txt2img(prompt="<lora:nope:1>", width=SIZE, height=SIZE, steps=2)
    assert missing.image.size == (SIZE, SIZE) and any("<lora:nope>" in w for w in missing.info["warnings"])
