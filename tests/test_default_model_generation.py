"""Generation breadth checked on the shipped default model (atelier-shapes-v1) with measurable answers:
inpainting changes only the masked area (and does change it), a LoRA of weight 0 changes nothing and of
weight 1 changes the output. (The ControlNet position check lives with the embedded ControlNet's tests.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from modules.generation.runners.img2img import encode_request_image, run_img2img
from modules.generation.addons.lora import LoraCache, lora_hook
from modules.generation.requests import Img2ImgRequest, Txt2ImgRequest
from modules.generation.results import OutputOptions
from modules.generation.runners.txt2img import run_txt2img
from modules.jobs.progress import JobControl
from modules.models.hashing import HashCache
from tests.fixtures.tiny_networks import kohya_lora_state, write_safetensors
from tests.test_img2img import load_active

DEFAULT = Path(__file__).resolve().parents[1] / "models" / "Stable-diffusion" / "atelier-shapes-v1.safetensors"
pytestmark = pytest.mark.skipif(not DEFAULT.is_file(), reason="the shipped default model is missing")


@pytest.fixture(scope="module")
def shapes(model_cache_dir: Path):
    return load_active(DEFAULT, model_cache_dir)


def _scene() -> Image.Image:
    image = Image.new("RGB", (64, 64), (40, 80, 220))
    ImageDraw.Draw(image).ellipse((8, 8, 28, 28), fill=(220, 30, 30))
    return image


def test_inpainting_changes_only_the_masked_area(shapes, tmp_path) -> None:
    scene = _scene()
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (32, 32, 60, 60))
    req = Img2ImgRequest(prompt="a yellow square", steps=8, seed=3, sampler_name="Euler", denoising_strength=1.0,
                         init_images=[encode_request_image(scene)], mask=encode_request_image(mask), mask_blur=0,
                         inpainting_fill=1)
    out = np.asarray(run_img2img(req, shapes, JobControl(), OutputOptions(save=False, outdir=tmp_path)).images[0])
    before, inside = np.asarray(scene), np.asarray(mask) > 0
    assert np.array_equal(out[~inside], before[~inside])                        # bit for bit outside
    assert np.abs(out[inside].astype(int) - before[inside].astype(int)).mean() > 10  # repainted inside


def test_lora_weight_zero_changes_nothing_weight_one_changes(shapes, tmp_path) -> None:
    lora_dir = tmp_path / "Lora"
    write_safetensors(lora_dir / "tint.safetensors", kohya_lora_state(shapes.model.pipeline, scale=0.5))
    hooks = [lora_hook(lora_dir, HashCache(tmp_path / "hashes.json"), LoraCache())]

    def image(prompt: str) -> bytes:
        req = Txt2ImgRequest(prompt=prompt, steps=8, seed=9, sampler_name="Euler", width=64, height=64)
        return run_txt2img(req, shapes, JobControl(), OutputOptions(save=False, outdir=tmp_path),
                           hooks=hooks).images[0].tobytes()

    plain = image("a red circle on a blue background")
    assert image("a red circle on a blue background <lora:tint:0>") == plain
    assert image("a red circle on a blue background <lora:tint:1>") != plain
    assert image("a red circle on a blue background") == plain  # the LoRA was taken off again
