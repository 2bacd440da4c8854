"""SDXL refiner switch-over on tiny SDXL base + refiner models loaded side by side by the ModelManager."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import pytest

from modules.generation.runners.img2img import encode_request_image, run_img2img
from modules.generation.runners.refiner import schedule_boundary
from modules.generation.requests import Img2ImgRequest, Txt2ImgRequest
from modules.generation.results import OutputOptions
from modules.generation.runners.txt2img import run_txt2img
from modules.generation.validation import InvalidRequestError
from modules.jobs.progress import JobControl
from modules.models.catalog import CheckpointCatalog
from modules.models.hashing import HashCache
from modules.models.loader import LoadOptions
from modules.models.manager import ModelManager
from tests.test_img2img import noise_image


@pytest.fixture(scope="module")
def manager(tiny_checkpoints, model_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> ModelManager:
    folder = tmp_path_factory.mktemp("refiner-models")
    for key in ("sdxl", "sdxl-refiner", "sd1"):
        shutil.copy(tiny_checkpoints[key]["single"], folder / f"{key}.safetensors")
    catalog = CheckpointCatalog([folder], HashCache(folder / "hashes.json"))
    manager = ModelManager(catalog, HashCache(folder / "hashes.json"), lambda: LoadOptions(cache_dir=model_cache_dir))
    manager.ensure_loaded("sdxl")
    return manager


def txt2img(manager: ModelManager, tmp_path: Path, control: JobControl | None = None, **kw):
    args = dict(prompt="a lighthouse", negative_prompt="lowres", steps=5, seed=8, sampler_name="Euler",
                width=64, height=64)
    args.update(kw)
    return run_txt2img(Txt2ImgRequest(**args), manager.active, control or JobControl(),
                       OutputOptions(save=False, outdir=tmp_path), refiners=manager)


def test_switch_over_runs_and_writes_infotext(manager, tmp_path) -> None:
    control = JobControl()
    refined = txt2img(manager, tmp_path, control, refiner_checkpoint="sdxl-refiner", refiner_switch_at=0.6)
    plain = txt2img(manager, tmp_path)
    assert refined.images[0].size == (64, 64)
    assert refined.images[0].tobytes() != plain.images[0].tobytes()
    text = refined.infotexts[0]
    refiner = manager.ensure_refiner("sdxl-refiner")
    assert f"Refiner: sdxl-refiner [{refiner.shorthash}], Refiner switch at: 0.6" in text
    assert control.progress.step == control.progress.total_steps == 5
    assert manager.active.model.family.id == "sdxl"  # the base stays the active model
    assert manager.ensure_refiner("sdxl-refiner") is refiner  # kept loaded, not reloaded
    assert txt2img(manager, tmp_path, refiner_checkpoint="sdxl-refiner", refiner_switch_at=0.6).images[0].tobytes() \
        == refined.images[0].tobytes()


def test_refiner_with_hires_refines_the_second_pass(manager, tmp_path) -> None:
    calls: list[tuple[str, str, dict]] = []

    @contextlib.contextmanager
    def spy(ctx):
        calls.append((ctx.task, ctx.model.family.id, dict(ctx.call_kwargs)))
        yield

    result = run_txt2img(Txt2ImgRequest(prompt="a lighthouse", steps=5, seed=8, width=64, height=64,
                                        refiner_checkpoint="sdxl-refiner", enable_hr=True, hr_scale=1.5,
                                        denoising_strength=0.6),
                         manager.active, JobControl(), OutputOptions(save=False, outdir=tmp_path), refiners=manager,
                         hooks=[spy])
    assert [(task, family) for task, family, _ in calls] == [
        ("txt2img", "sdxl"), ("hires", "sdxl"), ("refiner", "sdxl-refiner")]
    assert "denoising_end" not in calls[0][2]
    assert calls[1][2]["denoising_end"] == pytest.approx(0.88) == calls[2][2]["denoising_start"]
    assert result.images[0].size == (96, 96)
    assert "Refiner switch at: 0.8" in result.infotexts[0] and "Hires upscale: 1.5" in result.infotexts[0]


def test_refiner_after_img2img(manager, tmp_path) -> None:
    req = Img2ImgRequest(prompt="a lighthouse", steps=5, seed=8, denoising_strength=0.6,
                         init_images=[encode_request_image(noise_image())], refiner_checkpoint="sdxl-refiner")
    result = run_img2img(req, manager.active, JobControl(), OutputOptions(save=False, outdir=tmp_path),
                         refiners=manager)
    assert "Refiner: sdxl-refiner" in result.infotexts[0] and result.images[0].size == (64, 64)
    assert schedule_boundary(0.8, 0.6) == pytest.approx(0.88)


def test_refiner_needs_sdxl_latents(manager, tmp_path) -> None:
    with pytest.raises(InvalidRequestError, match="SD 1.x checkpoint"):
        txt2img(manager, tmp_path, refiner_checkpoint="sd1")
    with pytest.raises(InvalidRequestError, match="cannot load a second model"):
        run_txt2img(Txt2ImgRequest(steps=2, width=64, height=64, refiner_checkpoint="sdxl-refiner"),
                    manager.active, JobControl(), OutputOptions(save=False, outdir=tmp_path))
    assert Txt2ImgRequest(refiner_checkpoint="None").refiner_checkpoint is None
