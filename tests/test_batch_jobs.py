"""Batch jobs on a tiny model through the queue: img2img over three uploaded files and over a folder,
a refused folder outside the allowed roots, a failing file in the summary, interrupt, and the A1111
/sdapi/v1/extra-batch-images route plus Extras "Batch from Directory"."""

from __future__ import annotations

import base64
import io
import time

import numpy as np
import pytest
from PIL import Image

from modules.generation.requests import Img2ImgBatchRequest
from modules.images.extras_job import ExtrasRequest
from modules.jobs.queue import JobState
from modules.jobs.submit import submit_job


def _noise(seed: int, size: int = 64) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((size, size, 3)) * 255).astype(np.uint8))


def _b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def studio(studio_factory, tmp_path_factory):
    allowed = tmp_path_factory.mktemp("allowed")
    srv = studio_factory(("--nowebui", "--allowed-dir", str(allowed)), name="batch")
    srv.allowed = allowed  # type: ignore[attr-defined]
    return srv


def _run(ctx, request, timeout: float = 300):
    job = submit_job(ctx, request, source="webui")
    ctx.queue.wait(job.id, timeout)
    return job


def test_three_uploaded_files_give_three_outputs(studio, tmp_path) -> None:
    out = studio.allowed / "out-uploads"
    request = Img2ImgBatchRequest(batch_images=[_b64(_noise(i)) for i in range(3)],
                                  batch_names=["one.png", "two.png", "three.png"], output_dir=str(out),
                                  steps=2, seed=4, denoising_strength=0.5, sampler_name="Euler")
    job = _run(studio.ctx, request)
    assert job.state is JobState.SUCCEEDED, job.error
    assert sorted(p.name for p in out.iterdir()) == ["one.png", "three.png", "two.png"]
    assert len(job.result.images) == 3 and job.result.batch.done == 3
    assert job.result_meta["batch"] == {"total": 3, "done": 3, "interrupted": False, "failed": []}
    assert job.control.progress.job_count == 3


def test_folder_batch_with_a_bad_file_and_png_info(studio) -> None:
    src = studio.root / "data" / "batch-in"  # under the data dir: allowed
    src.mkdir()
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a blue square\nSteps: 3, Sampler: Euler, CFG scale: 5, Seed: 77")
    _noise(1).save(src / "a.png", pnginfo=info)
    (src / "b.png").write_bytes(b"not a png at all")
    _noise(2).save(src / "c.png")
    out = studio.root / "data" / "batch-out"
    job = _run(studio.ctx, Img2ImgBatchRequest(input_dir="batch-in", output_dir="batch-out", steps=2, seed=4,
                                               prompt="style", use_png_info=True, denoising_strength=0.5,
                                               sampler_name="Euler"))
    assert job.state is JobState.SUCCEEDED, job.error
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "c.png"]
    summary = job.result.batch
    assert (summary.total, summary.done) == (3, 2)
    assert summary.failed == [("b.png", "cannot read b.png: not an image file")]
    assert job.result.seeds == [77, 4]  # a's PNG info set its seed
    assert job.result.infotexts[0].startswith("style a blue square")
    assert "Steps: 3" in job.result.infotexts[0] and "Steps: 2" in job.result.infotexts[1]
    assert "2 of 3 done, 1 failed (b.png: cannot read b.png: not an image file)" == summary.text()


def test_folders_outside_the_roots_are_refused_before_queueing(studio, tmp_path) -> None:
    from modules.generation.validation import InvalidRequestError

    outside = tmp_path / "secret"
    outside.mkdir()
    _noise(1).save(outside / "x.png")
    (studio.root / "data" / "escape").symlink_to(outside, target_is_directory=True)
    for folder in (str(outside), "escape", "../" + tmp_path.name):
        with pytest.raises(InvalidRequestError, match="outside the folders this studio may use"):
            submit_job(studio.ctx, Img2ImgBatchRequest(input_dir=folder, steps=2), source="webui")
    with pytest.raises(InvalidRequestError, match="output folder .* outside"):
        submit_job(studio.ctx, Img2ImgBatchRequest(batch_images=[_b64(_noise(0))], output_dir=str(outside / "o"),
                                                   steps=2), source="webui")
    assert not (outside / "o").exists()


def test_interrupt_stops_the_batch_and_keeps_what_was_made(studio) -> None:
    request = Img2ImgBatchRequest(batch_images=[_b64(_noise(i)) for i in range(6)], steps=40, seed=4,
                                  denoising_strength=1.0, sampler_name="Euler", save_images=False)
    job = submit_job(studio.ctx, request, source="webui")
    deadline = time.time() + 120
    while job.control.progress.job_no < 1 and not job.done.is_set() and time.time() < deadline:
        time.sleep(0.02)
    studio.ctx.queue.interrupt(job_id=job.id)
    studio.ctx.queue.wait(job.id, 120)
    assert job.state is JobState.SUCCEEDED, job.error
    summary = job.result.batch
    assert summary.interrupted and 1 <= summary.done < 6
    assert "not started (interrupted)" in summary.text()
    assert len(job.result.images) == summary.done


def test_extra_batch_images_api_and_batch_from_directory(studio) -> None:
    images = [{"data": _b64(_noise(i, 32)), "name": f"n{i}.png"} for i in range(3)]
    with studio.client() as http:
        response = http.post("/sdapi/v1/extra-batch-images",
                             json={"imageList": images, "upscaling_resize": 2, "upscaler_1": "Lanczos"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["images"]) == 3
    assert all(Image.open(io.BytesIO(base64.b64decode(data))).size == (64, 64) for data in body["images"])

    src = studio.allowed / "extras-in"
    src.mkdir()
    for i in range(3):
        _noise(i, 32).save(src / f"p{i}.png")
    (src / "broken.png").write_bytes(b"nope")
    job = _run(studio.ctx, ExtrasRequest(input_dir=str(src), output_dir=str(studio.allowed / "extras-out"),
                                         upscaling_resize=2, upscaler_1="Lanczos"))
    assert job.state is JobState.SUCCEEDED, job.error
    assert sorted(p.name for p in (studio.allowed / "extras-out").iterdir()) == ["p0.png", "p1.png", "p2.png"]
    assert job.result.batch.done == 3 and job.result.batch.failed == [("broken.png", "not an image file")]
    assert job.result_meta["batch"]["failed"] == [{"name": "broken.png", "reason": "not an image file"}]
    from modules.images.upscale import UpscaleError

    with pytest.raises(UpscaleError, match="outside"):
        submit_job(studio.ctx, ExtrasRequest(input_dir="/etc"), source="webui")


def test_a_batch_is_prechecked_like_img2img(studio) -> None:
    from modules.generation.sampling.samplers import SamplerError

    with pytest.raises(SamplerError):
        submit_job(studio.ctx, Img2ImgBatchRequest(batch_images=[_b64(_noise(0))], sampler_name="No such sampler"),
                   source="webui")


def test_soft_inpainting_job_writes_its_infotext_and_keeps_far_pixels(studio) -> None:
    from modules.generation.requests import Img2ImgRequest

    original = _noise(5, 96)
    mask = Image.new("L", (96, 96), 0)
    mask.paste(255, (40, 40, 56, 56))
    job = _run(studio.ctx, Img2ImgRequest(init_images=[_b64(original)], mask=_b64(mask), soft_inpainting=True,
                                          soft_inpainting_softness=4, mask_blur=2, steps=2, seed=3,
                                          denoising_strength=0.9, sampler_name="Euler", width=96, height=96))
    assert job.state is JobState.SUCCEEDED, job.error
    infotext = job.result.infotexts[0]
    assert "Soft inpainting enabled: True" in infotext and "Soft inpainting softness: 4" in infotext
    out = np.asarray(job.result.images[0].convert("RGB"))
    source = np.asarray(original)
    assert np.array_equal(out[:16], source[:16]) and np.array_equal(out[:, -16:], source[:, -16:])
    assert not np.array_equal(out[44:52, 44:52], source[44:52, 44:52])  # the masked middle was repainted

    failed = _run(studio.ctx, Img2ImgRequest(init_images=[_b64(original)], soft_inpainting=True, steps=2))
    assert failed.state is JobState.FAILED and "soft inpainting" in (failed.error or "")


def test_native_api_callers_cannot_use_server_folders(studio) -> None:
    from modules.jobs.submit import submit

    src = studio.allowed / "api-in"
    src.mkdir()
    _noise(1, 16).save(src / "x.png")
    job = submit(studio.ctx, ExtrasRequest(input_dir=str(src), upscaler_1="Lanczos"), source="api")[0]
    studio.ctx.queue.wait(job.id, 60)
    assert job.state is JobState.FAILED and "not available through the API" in (job.error or "")
