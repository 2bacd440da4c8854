"""UNet backends (issue 29): ONNX Runtime and OpenVINO run the studio's samplers within 1/255 of PyTorch on a
tiny SD 1.x model, the export is cached and checked once, and what an exported graph cannot run (LoRA,
ControlNet, SDXL) is refused naming PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modules.backends.registry import BackendError, get_backend
from modules.backends.scope import BackendCache, backend_scope
from modules.generation.requests import Img2ImgRequest, Txt2ImgRequest
from modules.generation.runners.txt2img import OutputOptions, run_txt2img
from modules.jobs.progress import JobControl
from modules.models.catalog import CheckpointInfo
from modules.models.loader import LoadOptions, load_model
from modules.models.manager import ActiveModel


def _active(path: Path, cache: Path) -> ActiveModel:
    model = load_model(path, LoadOptions(cache_dir=cache))
    model.pipeline.set_progress_bar_config(disable=True)
    return ActiveModel(info=CheckpointInfo(path, path.name, False), model=model, sha256="ab" * 32, load_seconds=0)


@pytest.fixture(scope="module")
def sd1(tiny_checkpoints, model_cache_dir: Path) -> ActiveModel:
    return _active(tiny_checkpoints["sd1"]["single"], model_cache_dir)


def _pixels(active: ActiveModel, tmp_path: Path, sampler: str = "Euler a") -> np.ndarray:
    req = Txt2ImgRequest(prompt="a red circle", steps=4, width=64, height=64, seed=7, sampler_name=sampler)
    result = run_txt2img(req, active, JobControl(), OutputOptions(save=False, outdir=tmp_path))
    return np.asarray(result.images[0], dtype=np.int16)


@pytest.mark.parametrize(("backend", "precision", "limit"), [("onnx", "f32", 1), ("openvino", "f32", 1),
                                                             ("openvino", "bf16", 40)])
def test_exported_backends_match_pytorch(sd1, tmp_path, backend: str, precision: str, limit: int) -> None:
    if get_backend(backend).missing():
        pytest.skip(get_backend(backend).missing())
    cache = BackendCache(tmp_path / "cache")
    reference = _pixels(sd1, tmp_path)
    with backend_scope(cache, sd1, backend, Txt2ImgRequest(), precision):
        assert type(sd1.model.pipeline.unet).__name__ == "RuntimeUNet"
        ours = _pixels(sd1, tmp_path)
        dpm = _pixels(sd1, tmp_path, "DPM++ 2M")
    assert type(sd1.model.pipeline.unet).__name__ == "UNet2DConditionModel"  # put back
    assert np.abs(ours - reference).max() <= limit
    assert np.abs(dpm - _pixels(sd1, tmp_path, "DPM++ 2M")).max() <= limit
    exports = list((tmp_path / "cache" / "backends").glob("*/unet.onnx"))
    assert len(exports) == 1 and list(exports[0].parent.glob(f"parity-{backend}-{precision}.json"))
    mtime = exports[0].stat().st_mtime_ns
    with backend_scope(BackendCache(tmp_path / "cache"), sd1, backend, Txt2ImgRequest(), precision):
        pass
    assert exports[0].stat().st_mtime_ns == mtime  # reused, not exported again


def test_what_an_exported_graph_cannot_run_is_refused(sd1, tiny_checkpoints, model_cache_dir, tmp_path) -> None:
    cache = BackendCache(tmp_path / "cache")
    with pytest.raises(BackendError, match="LoRA runs on the PyTorch backend"):
        with backend_scope(cache, sd1, "onnx", Txt2ImgRequest(prompt="a <lora:x:1>")):
            pass
    with pytest.raises(BackendError, match="ControlNet runs on the PyTorch backend"):
        with backend_scope(cache, sd1, "openvino", Img2ImgRequest(init_images=["x"],
                                                                  controlnet_units=[{"model": "m"}])):
            pass
    sdxl = _active(tiny_checkpoints["sdxl"]["single"], model_cache_dir)
    with pytest.raises(BackendError, match="SD 1.x and 2.x UNets"):
        with backend_scope(cache, sdxl, "onnx", Txt2ImgRequest()):
            pass
    with pytest.raises(BackendError, match="unknown backend"):
        get_backend("tpu")


def test_backend_flag_runs_jobs_and_refuses_lora_at_submit(studio_factory) -> None:
    from modules.jobs.model import JobState
    from modules.jobs.submit import submit_job

    ctx = studio_factory(("--nowebui", "--backend", "onnx")).ctx
    job = submit_job(ctx, Txt2ImgRequest(prompt="x", steps=2, width=64, height=64, seed=1, sampler_name="Euler"),
                     owner="t", source="test")
    ctx.queue.wait(job.id, 300)
    assert job.state is JobState.SUCCEEDED, job.error
    with pytest.raises(BackendError, match="PyTorch"):
        submit_job(ctx, Txt2ImgRequest(prompt="x <lora:any:1>", steps=2), owner="t", source="test")
    ctx.settings.update({"backend_by_model": {ctx.models.active.info.name: "torch"}})  # this model on PyTorch
    with pytest.raises(Exception, match="LoRA 'any' not found"):  # past the backend check, to the LoRA lookup
        submit_job(ctx, Txt2ImgRequest(prompt="x <lora:any:1>", steps=2), owner="t", source="test")
