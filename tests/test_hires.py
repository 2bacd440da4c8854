"""Hires fix in txt2img: target geometry, latent and pixel upscalers (incl. an ESRGAN model through
spandrel), second-pass options, infotext and progress over both passes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from modules.generation.runners.hires import target_size
from modules.generation.requests import Txt2ImgRequest
from modules.generation.results import OutputOptions
from modules.generation.runners.txt2img import run_txt2img
from modules.generation.validation import InvalidRequestError
from modules.images.upscalers import LATENT_MODES, UpscalerError, UpscalerSet, interpolate_latents
from modules.jobs.progress import JobControl
from tests.test_img2img import load_active


@pytest.fixture(scope="module")
def sd1(tiny_checkpoints, model_cache_dir: Path):
    return load_active(tiny_checkpoints["sd1"]["single"], model_cache_dir)


@pytest.fixture(scope="module")
def esrgan_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random 2x ESRGAN (old RRDB layout) in models/ESRGAN."""
    from safetensors.torch import save_file
    from spandrel.architectures.ESRGAN import ESRGAN

    folder = tmp_path_factory.mktemp("models") / "ESRGAN"
    folder.mkdir()
    torch.manual_seed(0)
    net = ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=2)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, folder / "2x-Tiny.safetensors")
    (folder / "broken.pth").write_bytes(b"not a model")
    return folder


def hires(active, tmp_path: Path, control: JobControl | None = None, upscalers: UpscalerSet | None = None, **kw):
    args = dict(prompt="a red circle", negative_prompt="lowres", steps=3, seed=2, sampler_name="Euler",
                width=64, height=64, enable_hr=True, hr_scale=1.5, denoising_strength=0.7)
    args.update(kw)
    return run_txt2img(Txt2ImgRequest(**args), active, control or JobControl(),
                       OutputOptions(save=False, outdir=tmp_path), upscalers=upscalers)


def test_target_size_geometry() -> None:
    def size(**kw):
        return target_size(Txt2ImgRequest(enable_hr=True, **kw), 64, 48, 8)

    assert size(hr_scale=2.0) == (128, 96, 128, 96)
    assert size(hr_scale=1.3) == (80, 56, 80, 56)  # int(83.2), int(62.4) rounded down to 8
    assert size(hr_resize_x=128) == (128, 96, 128, 96)
    assert size(hr_resize_y=96) == (128, 96, 128, 96)
    assert size(hr_resize_x=128, hr_resize_y=128) == (168, 128, 128, 128)  # cover, then crop centrally


@pytest.mark.parametrize("upscaler", ["Latent", "Latent (nearest-exact)", "Lanczos", "Nearest", "None"])
def test_hires_output_size_and_infotext(sd1, tmp_path, upscaler: str) -> None:
    result = hires(sd1, tmp_path, hr_upscaler=upscaler)
    assert result.images[0].size == (96, 96)
    text = result.infotexts[0]
    assert "Size: 64x64" in text and "Denoising strength: 0.7" in text
    assert "Hires upscale: 1.5" in text and f"Hires upscaler: {upscaler}" in text
    assert "Hires steps" not in text
    assert result.width == 64 and result.denoising_strength == 0.7


def test_hires_is_deterministic_and_changes_the_first_pass(sd1, tmp_path) -> None:
    a, b = hires(sd1, tmp_path), hires(sd1, tmp_path)
    assert a.images[0].tobytes() == b.images[0].tobytes()
    low = run_txt2img(Txt2ImgRequest(prompt="a red circle", negative_prompt="lowres", steps=3, seed=2,
                                     sampler_name="Euler", width=64, height=64), sd1, JobControl(),
                      OutputOptions(save=False, outdir=tmp_path))
    upscaled = np.asarray(low.images[0].resize((96, 96)), dtype=int)
    assert np.abs(np.asarray(a.images[0], dtype=int) - upscaled).mean() > 1


def test_resize_to_with_crop_and_second_pass_options(sd1, tmp_path) -> None:
    control = JobControl()
    result = hires(sd1, tmp_path, control, hr_resize_x=96, hr_resize_y=64, hr_second_pass_steps=4,
                   hr_sampler_name="DPM++ 2M", hr_prompt="a blue square", denoising_strength=0.5)
    assert result.images[0].size == (96, 64)
    text = result.infotexts[0]
    assert "Hires resize: 96x64" in text and "Hires steps: 4" in text
    assert "Hires sampler: DPM++ 2M" in text and "Hires prompt: a blue square" in text
    assert control.progress.total_steps == 3 + 3  # first pass + A1111's int(4 * 0.5) + 1 second-pass steps
    assert control.progress.step == 6


def test_unknown_upscaler_is_refused_with_the_choices(sd1, tmp_path) -> None:
    with pytest.raises(InvalidRequestError, match="Latent \\(bicubic\\).*Lanczos"):
        hires(sd1, tmp_path, hr_upscaler="4x-Missing")


def test_too_large_target_is_refused(sd1, tmp_path) -> None:
    with pytest.raises(InvalidRequestError, match="hires width"):
        hires(sd1, tmp_path, width=1024, height=64, hr_scale=4.0)


def test_latent_modes_interpolate() -> None:
    latents = torch.randn(1, 4, 8, 8)
    for name in LATENT_MODES:
        assert interpolate_latents(latents, 12, 16, name).shape == (1, 4, 12, 16)
    with pytest.raises(UpscalerError):
        interpolate_latents(latents, 12, 16, "Lanczos")


def test_esrgan_model_upscaler(sd1, tmp_path, esrgan_dir: Path) -> None:
    upscalers = UpscalerSet.for_models_dir(esrgan_dir.parent)
    assert upscalers.names()[-2:] == ["2x-Tiny", "broken"]
    assert UpscalerSet().names(latent=False) == ["Lanczos", "Nearest"]
    out = upscalers.upscale_image(Image.new("RGB", (20, 12), (200, 10, 10)), 2.0, "2x-tiny")
    assert out.size == (40, 24)
    big = upscalers.upscale_image(Image.new("RGB", (300, 40), (10, 200, 10)), 1.5, "2x-Tiny")  # tiled
    assert big.size == (448, 56)
    with pytest.raises(UpscalerError, match="broken.pth"):
        upscalers.upscale_image(Image.new("RGB", (8, 8)), 2.0, "broken")
    result = hires(sd1, tmp_path, upscalers=upscalers, hr_upscaler="2x-Tiny", hr_scale=2.0)
    assert result.images[0].size == (128, 128) and "Hires upscaler: 2x-Tiny" in result.infotexts[0]


def test_tiny_denoising_runs_one_second_pass_step_and_zero_none(sd1, tmp_path) -> None:
    control = JobControl()
    result = hires(sd1, tmp_path, control, denoising_strength=0.1)  # A1111: int(3 * 0.1) + 1 = 1 step
    assert result.images[0].size == (96, 96) and control.progress.total_steps == 3 + 1
    control = JobControl()
    result = hires(sd1, tmp_path, control, denoising_strength=0.0)  # the upscaled image as it is
    assert result.images[0].size == (96, 96) and control.progress.total_steps == 3
