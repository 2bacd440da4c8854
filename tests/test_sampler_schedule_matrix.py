"""Every sampler x schedule pair the API lists runs, deterministically, and is never refused.

The pairs come from the same functions ``/sdapi/v1/samplers`` and ``/sdapi/v1/schedulers`` serve. Each
pair runs through the txt2img runner with one seed (2 steps, one in-process pipeline); every sampler on its
Automatic schedule, and the noise-drawing ones on Karras too, run twice and must give the same pixels, and the infotext's ``Schedule type`` must be the schedule the
resolved sampler reports it used. The tiny SD 1.x model keeps this fast; the embedded default
(64 px, a trained model) runs the same matrix under the ``slow`` marker.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from modules.generation.requests import Txt2ImgRequest
from modules.generation.sampling.samplers import list_samplers, list_schedules, resolve_sampler
from modules.generation.runners.txt2img import OutputOptions, run_txt2img
from modules.jobs.progress import JobControl
from modules.models.catalog import CheckpointInfo
from modules.models.loader import LoadOptions, load_model
from modules.models.manager import ActiveModel

EMBEDDED = Path(__file__).resolve().parents[1] / "models" / "Stable-diffusion" / "atelier-shapes-v1.safetensors"
PAIRS = [(sampler["name"], schedule["label"]) for sampler in list_samplers() for schedule in list_schedules()]


def _active(path: Path, cache_dir: Path) -> ActiveModel:
    model = load_model(path, LoadOptions(cache_dir=cache_dir))
    model.pipeline.set_progress_bar_config(disable=True)
    return ActiveModel(info=CheckpointInfo(path, path.name, False), model=model, sha256="0" * 64, load_seconds=0)


def _run_matrix(active: ActiveModel, tmp_path: Path, *, twice: Callable[[str, str], bool] = lambda *_: True,
                steps: int = 2) -> None:
    """Run every pair; the pairs ``twice`` selects run a second time and must give the same pixels."""
    failures: list[str] = []
    for sampler, schedule in PAIRS:
        req = Txt2ImgRequest(prompt="a red circle", steps=steps, width=64, height=64, seed=7, sampler_name=sampler,
                             scheduler=schedule)
        runs = [run_txt2img(req, active, JobControl(), OutputOptions(save=False, outdir=tmp_path))
                for _ in range(2 if twice(sampler, schedule) else 1)]
        label = resolve_sampler(sampler, schedule).schedule_label_for(active.model.prediction_type)
        if len(runs) == 2 and not np.array_equal(np.asarray(runs[0].images[0]), np.asarray(runs[1].images[0])):
            failures.append(f"{sampler} / {schedule}: not deterministic")
        if f"Schedule type: {label}" not in runs[0].infotexts[0]:
            failures.append(f"{sampler} / {schedule}: infotext lacks 'Schedule type: {label}'")
    assert not failures, failures


def test_listing_is_a1111s() -> None:
    names = {sampler for sampler, _ in PAIRS}
    assert {"DPM fast", "DPM adaptive", "Restart"} <= names
    assert len(PAIRS) == len(list_samplers()) * 12


#: the samplers that draw noise while they sample (seed streams, Brownian trees): their determinism is checked for
#: every schedule; the others compute the same arithmetic from the same initial noise
STOCHASTIC = {"Euler a", "DPM2 a", "DPM++ 2S a", "DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 3M SDE",
              "DPM fast", "DPM adaptive", "Restart", "LCM"}


def test_every_pair_runs_on_tiny_sd1(tiny_checkpoints, model_cache_dir: Path, tmp_path: Path) -> None:
    assert STOCHASTIC <= {sampler for sampler, _ in PAIRS}
    # determinism: every sampler on its own schedule, and the noise-drawing samplers on a second schedule too
    # (their noise streams and Brownian trees are keyed by sigmas, which the schedule changes)
    _run_matrix(_active(tiny_checkpoints["sd1"]["single"], model_cache_dir), tmp_path,
                twice=lambda sampler, schedule: schedule == "Automatic"
                or (sampler in STOCHASTIC and schedule == "Karras"))


@pytest.mark.parametrize("counts_calls", [False, True])
def test_every_sampler_finishes_from_any_start(counts_calls: bool) -> None:
    """Driven like img2img (begin at a step) or SDXL's refiner (begin at a model call), every A1111
    sampler's remaining calls fit the timesteps the pipeline iterates, and it finishes."""
    import torch

    config = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000}
    unfinished = []
    for sampler in [s["name"] for s in list_samplers()]:
        for steps in (2, 5, 12):
            for begin in range(steps):
                scheduler = resolve_sampler(sampler).build(config, "epsilon", seeds=[1])
                if not hasattr(scheduler, "begin_counts_calls"):
                    continue  # a diffusers scheduler (DEIS)
                scheduler.begin_counts_calls = counts_calls
                scheduler.set_timesteps(steps)
                start = min(begin * 2, len(scheduler.timesteps) - 1) if counts_calls else begin
                timesteps = scheduler.timesteps[start:]
                scheduler.set_begin_index(start)
                x = scheduler.add_noise(torch.zeros(1, 4, 4, 4), torch.ones(1, 4, 4, 4), timesteps[:1])
                for t in timesteps:
                    x = scheduler.step(0.1 * scheduler.scale_model_input(x, t), t, x).prev_sample
                    if scheduler.finished:
                        break
                if len(timesteps) and not scheduler.finished or not torch.isfinite(x).all():
                    unfinished.append((sampler, steps, start))
    assert not unfinished, unfinished[:10]
