"""FLUX options on tiny FLUX.1 models: schnell in one step without guidance, dev's distilled guidance,
the T5 ``max_sequence_length`` limits, and FLUX img2img / inpainting / hires through the same runners."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modules.generation.runners.img2img import encode_request_image, run_img2img
from modules.generation.requests import Img2ImgRequest, Txt2ImgRequest
from modules.generation.results import OutputOptions
from modules.generation.runners.txt2img import run_txt2img
from modules.generation.validation import InvalidRequestError
from modules.jobs.progress import JobControl
from tests.fixtures.flux_models import build_tiny_flux
from tests.test_img2img import load_active, noise_image


@pytest.fixture(scope="module")
def flux(tmp_path_factory: pytest.TempPathFactory, model_cache_dir: Path):
    root = tmp_path_factory.mktemp("flux")
    return {variant: load_active(build_tiny_flux(variant, root / variant, fmt="diffusers"), model_cache_dir)
            for variant in ("schnell", "dev")}


class Spy:
    """A sampling hook recording what each pipeline call received."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    @contextlib.contextmanager
    def __call__(self, ctx):
        self.calls.append({"task": ctx.task, **ctx.call_kwargs})
        yield


def txt2img(active, tmp_path: Path, hooks=(), **kw):
    args = dict(prompt="a red fox", steps=2, seed=4, sampler_name="Euler", width=64, height=64, cfg_scale=1.0)
    args.update(kw)
    return run_txt2img(Txt2ImgRequest(**args), active, JobControl(), OutputOptions(save=False, outdir=tmp_path),
                       hooks=hooks)


def test_schnell_in_one_step_without_guidance(flux, tmp_path) -> None:
    spy = Spy()
    result = txt2img(flux["schnell"], tmp_path, hooks=[spy], steps=1)
    assert result.images[0].size == (64, 64)
    assert spy.calls[0]["num_inference_steps"] == 1 and spy.calls[0]["guidance_scale"] == 0.0
    assert spy.calls[0]["max_sequence_length"] == 256
    assert "Steps: 1," in result.infotexts[0] and "Distilled CFG Scale" not in result.infotexts[0]
    assert flux["schnell"].model.family.default_steps == 4


def test_dev_distilled_guidance(flux, tmp_path) -> None:
    spy = Spy()
    a = txt2img(flux["dev"], tmp_path, hooks=[spy], distilled_cfg_scale=2.5)
    b = txt2img(flux["dev"], tmp_path, distilled_cfg_scale=6.0)
    assert "Distilled CFG Scale: 2.5" in a.infotexts[0]
    assert spy.calls[0]["guidance_scale"] == 2.5 and spy.calls[0]["max_sequence_length"] == 512
    assert a.images[0].tobytes() != b.images[0].tobytes()  # the guidance embedding is used


def test_max_sequence_length_limits(flux, tmp_path) -> None:
    with pytest.raises(InvalidRequestError, match="above FLUX.1 schnell's limit of 256"):
        txt2img(flux["schnell"], tmp_path, max_sequence_length=300)
    spy = Spy()
    txt2img(flux["dev"], tmp_path, hooks=[spy], max_sequence_length=300)
    assert spy.calls[0]["max_sequence_length"] == 300
    with pytest.raises(ValueError):
        Txt2ImgRequest(max_sequence_length=513)


def test_flux_img2img_and_inpaint(flux, tmp_path) -> None:
    image = noise_image(64, 64, seed=2)
    out = OutputOptions(save=False, outdir=tmp_path)
    base = dict(prompt="a fox", steps=4, seed=1, sampler_name="Euler", init_images=[encode_request_image(image)])
    result = run_img2img(Img2ImgRequest(**base, denoising_strength=0.5), flux["schnell"], JobControl(), out)
    assert result.images[0].size == (64, 64) and "Denoising strength: 0.5" in result.infotexts[0]
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    painted = run_img2img(Img2ImgRequest(**base, denoising_strength=0.9, mask=encode_request_image(mask),
                                         mask_blur=0), flux["dev"], JobControl(), out)
    keep = np.asarray(mask) == 0
    assert np.array_equal(np.asarray(painted.images[0])[keep], np.asarray(image)[keep])


def test_flux_hires(flux, tmp_path) -> None:
    spy = Spy()
    result = txt2img(flux["schnell"], tmp_path, hooks=[spy], enable_hr=True, hr_scale=1.5, denoising_strength=0.5,
                     steps=2)
    assert result.images[0].size == (96, 96)
    assert [c["task"] for c in spy.calls] == ["txt2img", "hires"]
    assert spy.calls[1]["height"] == 96 and spy.calls[1]["image"].shape[-2:] == (12, 12)


def test_kontext_editing_uses_the_reference(flux, tmp_path) -> None:
    out = OutputOptions(save=False, outdir=tmp_path)
    spy = Spy()
    red, blue = noise_image(64, 64, seed=2), noise_image(64, 64, seed=3)
    base = dict(prompt="make it blue", steps=2, seed=1, sampler_name="Euler", flux_kontext=True)
    a = run_img2img(Img2ImgRequest(**base, init_images=[encode_request_image(red)]), flux["dev"], JobControl(), out,
                    hooks=[spy])
    b = run_img2img(Img2ImgRequest(**base, init_images=[encode_request_image(blue)]), flux["dev"], JobControl(), out)
    again = run_img2img(Img2ImgRequest(**base, init_images=[encode_request_image(red)]), flux["dev"], JobControl(),
                        out)
    assert a.images[0].size == (64, 64) and "Kontext references: 1" in a.infotexts[0]
    assert a.images[0].tobytes() != b.images[0].tobytes()      # the reference image conditions the output
    assert a.images[0].tobytes() == again.images[0].tobytes()  # and seeds reproduce
    assert type(spy.calls[0]["image"]).__name__ == "Image" and spy.calls[0]["image"].size == (64, 64)
    assert "strength" not in spy.calls[0]
    two = run_img2img(Img2ImgRequest(**base, batch_size=2, init_images=[encode_request_image(red),
                                                                        encode_request_image(blue)]),
                      flux["schnell"], JobControl(), out, hooks=[spy])
    assert len(two.images) == 2 and "Kontext references: 2" in two.infotexts[0]
    assert spy.calls[-1]["image"].size == (128, 64)            # stitched side by side


def test_kontext_refusals(flux, tmp_path, tiny_checkpoints, model_cache_dir) -> None:
    out = OutputOptions(save=False, outdir=tmp_path)
    image = encode_request_image(noise_image(64, 64, seed=2))
    with pytest.raises(InvalidRequestError, match="remove the mask"):
        run_img2img(Img2ImgRequest(prompt="x", steps=1, flux_kontext=True, init_images=[image], mask=image),
                    flux["dev"], JobControl(), out)
    sd1 = load_active(tiny_checkpoints["sd1"]["single"], model_cache_dir)
    with pytest.raises(InvalidRequestError, match="needs a FLUX.1 model"):
        run_img2img(Img2ImgRequest(prompt="x", steps=1, flux_kontext=True, init_images=[image]), sd1, JobControl(),
                    out)
