"""Memory modes (issue 29.3): --lowvram/--medvram map to offload modes, which on a CPU say they do not apply;
VAE tiling and slicing are set on the pipeline for a job; the job's peak memory and mode are reported."""

from __future__ import annotations

import pytest

from modules.backends.memory import mode_from, resolve_mode


class _Flags:
    def __init__(self, low: bool = False, med: bool = False) -> None:
        self.lowvram, self.medvram = low, med


class _Settings:
    memory_mode = "auto"


def test_flags_and_auto_choice() -> None:
    assert mode_from(_Flags(low=True), _Settings()) == "sequential_offload"
    assert mode_from(_Flags(med=True), _Settings()) == "model_offload"
    assert mode_from(_Flags(), _Settings()) == "auto"
    gib = 2**30
    assert resolve_mode("auto", "cuda:0", 2 * gib, 8 * gib) == ("none", None)
    assert resolve_mode("auto", "cuda:0", 2 * gib, 3 * gib) == ("model_offload", None)
    assert resolve_mode("auto", "cuda:0", 2 * gib, 1 * gib) == ("sequential_offload", None)
    mode, note = resolve_mode("model_offload", "cpu", gib, None)
    assert mode == "none" and "needs a GPU" in note
    with pytest.raises(ValueError, match="unknown memory mode"):
        resolve_mode("tiny", "cpu", 1, None)


def test_job_reports_mode_and_peak_and_sets_vae_tiling(studio_factory) -> None:
    from modules.generation.requests import Txt2ImgRequest
    from modules.jobs.model import JobState
    from modules.jobs.submit import submit_job

    ctx = studio_factory(("--nowebui", "--medvram")).ctx
    ctx.settings.update({"vae_tiling": True})
    job = submit_job(ctx, Txt2ImgRequest(prompt="x", steps=2, width=64, height=64, seed=1, sampler_name="Euler"),
                     owner="t", source="test")
    ctx.queue.wait(job.id, 120)
    assert job.state is JobState.SUCCEEDED, job.error
    assert ctx.models.active.model.pipeline.vae.use_tiling
    assert job.result.memory_mode == "none + VAE tiling" and job.result.peak_memory_mb > 0
    assert any("model_offload needs a GPU" in w for w in job.result.warnings)
    ctx.settings.update({"vae_tiling": False})
