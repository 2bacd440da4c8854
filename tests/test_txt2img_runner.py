"""The txt2img runner on a tiny SD 1.x model: determinism, A1111 prompt syntax reaching the
model, clip skip, prompt editing, interrupt with partial results, and clear refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modules.generation.requests import Txt2ImgRequest
from modules.generation.runners.txt2img import OutputOptions, run_txt2img
from modules.generation.validation import InvalidRequestError
from modules.jobs.progress import JobControl
from modules.models.catalog import CheckpointInfo
from modules.models.loader import LoadOptions, load_model
from modules.models.manager import ActiveModel


@pytest.fixture(scope="module")
def active(tiny_checkpoints, model_cache_dir: Path) -> ActiveModel:
    path = tiny_checkpoints["sd1"]["single"]
    model = load_model(path, LoadOptions(cache_dir=model_cache_dir))
    model.pipeline.set_progress_bar_config(disable=True)
    return ActiveModel(info=CheckpointInfo(path, path.name, False), model=model, sha256="0" * 64, load_seconds=0)


def _run(active: ActiveModel, tmp_path: Path, control: JobControl | None = None, **kw) -> object:
    args = dict(prompt="a red circle", steps=3, width=64, height=64, seed=11, sampler_name="Euler")
    args.update(kw)
    out = OutputOptions(save=False, outdir=tmp_path)
    return run_txt2img(Txt2ImgRequest(**args), active, control or JobControl(), out)


def _px(result) -> np.ndarray:
    return np.asarray(result.images[0], dtype=np.int16)


def test_deterministic_bit_for_bit(active, tmp_path) -> None:
    for sampler in ("Euler a", "DPM++ 2M", "DPM++ SDE", "DDIM"):
        a, b = _run(active, tmp_path, sampler_name=sampler), _run(active, tmp_path, sampler_name=sampler)
        assert a.images[0].tobytes() == b.images[0].tobytes(), sampler


def test_attention_weights_reach_the_model(active, tmp_path) -> None:
    plain = _px(_run(active, tmp_path, prompt="a red circle"))
    same = _px(_run(active, tmp_path, prompt="a (red:1.0) circle"))
    weighted = _px(_run(active, tmp_path, prompt="a (red:1.6) circle"))
    assert np.array_equal(plain, same)
    assert np.abs(plain - weighted).max() > 0


def test_clip_skip_and_prompt_editing(active, tmp_path) -> None:
    base = _run(active, tmp_path)
    skipped = _run(active, tmp_path, clip_skip=2)
    assert "Clip skip: 2" in skipped.infotexts[0]
    assert np.abs(_px(base) - _px(skipped)).max() > 0
    cat, dog = _px(_run(active, tmp_path, prompt="a cat")), _px(_run(active, tmp_path, prompt="a dog"))
    edited = _px(_run(active, tmp_path, prompt="a [cat:dog:0.5]"))
    assert np.abs(edited - cat).max() > 0 and np.abs(edited - dog).max() > 0


def test_long_prompt_in_chunks(active, tmp_path) -> None:
    long_prompt = ", ".join(["a red circle on a blue background"] * 20)  # > 75 tokens
    result = _run(active, tmp_path, prompt=long_prompt)
    assert result.images[0].size == (64, 64)


def test_batches_use_seed_plus_index(active, tmp_path) -> None:
    result = _run(active, tmp_path, batch_size=2, n_iter=2)
    assert result.seeds == [11, 12, 13, 14]
    single = _run(active, tmp_path, seed=13)
    # Same noise, so the same picture; batched matmuls may round differently from a batch of one (oneDNN picks
    # kernels per shape, e.g. AMX ones on CPUs that have them), so allow a level or two, never a different image.
    batched, alone = np.asarray(result.images[2], dtype=np.int16), _px(single)
    assert np.abs(batched - alone).max() <= 2
    assert np.abs(np.asarray(result.images[3], dtype=np.int16) - alone).max() > 10  # seed 14 is another picture


def test_interrupt_returns_partial_result(active, tmp_path) -> None:
    control = JobControl()
    control.interrupt_event.set()
    result = _run(active, tmp_path, control=control, n_iter=3)
    assert result.interrupted and len(result.images) == 0
    control = JobControl()

    class StopAfterFirstStep(JobControl):
        def step(self, step, preview_source=None):
            super().step(step, preview_source)
            self.interrupt_event.set()

    result = _run(active, tmp_path, control=StopAfterFirstStep(), n_iter=3, steps=10)
    assert result.interrupted and len(result.images) == 1


@pytest.mark.parametrize("kw, fragment", [
    ({"prompt": "a <lora:nope:1> cat"}, "lora"),
    ({"width": 60}, "multiple of 8"),
    ({"height": 8}, "outside"),
    ({"prompt": "a [cat:dog:0.5"}, ""),
])
def test_refusals_are_clear(active, tmp_path, kw: dict, fragment: str) -> None:
    if kw.get("prompt") == "a [cat:dog:0.5":  # unbalanced: A1111 treats it as plain text, no error
        assert _run(active, tmp_path, **kw).images
        return
    with pytest.raises(InvalidRequestError, match=fragment):
        _run(active, tmp_path, **kw)


def test_one_batch_runs_alone_without_owning_the_progress(active, tmp_path) -> None:
    """Issue 24.4: a caller (an X/Y/Z grid, say) plans once and runs one batch; the batch runner does not call
    ``control.begin`` (the caller owns the job's progress) and gives the image the whole job gives."""
    from modules.generation.runners.txt2img import new_result, plan_txt2img, run_txt2img_batch

    req = Txt2ImgRequest(prompt="a red circle", steps=3, width=64, height=64, seed=11, sampler_name="Euler a",
                         n_iter=3)
    whole = run_txt2img(req, active, JobControl(), OutputOptions(save=False, outdir=tmp_path))

    class Watched(JobControl):
        begins: list[tuple[int, int]] = []

        def begin(self, job_count: int, total_steps: int, text: str = "") -> None:
            self.begins.append((job_count, total_steps))
            super().begin(job_count, total_steps, text)

    control = Watched()
    control.begin(10, 99, text="my grid")  # the caller's own progress: 10 cells
    plan = plan_txt2img(req, active)
    result = new_result(plan)
    assert run_txt2img_batch(plan, 2, control, result, OutputOptions(save=False, outdir=tmp_path), job_no=7)
    assert control.begins == [(10, 99)] and control.progress.job_no == 7
    assert result.seeds == [whole.seeds[2]]
    assert result.images[0].tobytes() == whole.images[2].tobytes()
