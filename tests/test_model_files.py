"""Merge and conversion (issue 28): merge arithmetic against a hand computation, families refused, a
hostile pickle refused without running, .ckpt to .safetensors, fp16, and both as jobs in a studio."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from modules.models.convert.pickle_to_safetensors import ConversionError, prune_ema, read_pickled_tensors
from modules.models.merge import MergeError, MergeInputs, merge


def _variant(src: Path, dest: Path, scale: float) -> Path:
    state = load_file(str(src))
    save_file({k: (v * scale if v.is_floating_point() else v) for k, v in state.items()}, str(dest))
    return dest


def test_merge_arithmetic(tiny_model, tmp_path: Path) -> None:
    a = shutil.copy(tiny_model("sd1"), tmp_path / "a.safetensors")
    b = _variant(Path(a), tmp_path / "b.safetensors", 3.0)
    c = _variant(Path(a), tmp_path / "c.safetensors", 2.0)
    sa, sb, sc = (load_file(str(p)) for p in (a, b, c))
    key = next(k for k, v in sa.items() if v.is_floating_point() and v.abs().sum() > 0)
    ws = merge(MergeInputs(Path(a), b, None, "weighted_sum", 0.25))
    assert torch.allclose(ws[key], sa[key] * 0.75 + sb[key] * 0.25, atol=1e-6)
    ad = merge(MergeInputs(Path(a), b, c, "add_difference", 0.5))
    assert torch.allclose(ad[key], sa[key] + (sb[key] - sc[key]) * 0.5, atol=1e-6)
    assert set(ws) == set(sa)
    half = merge(MergeInputs(Path(a), b, None, "weighted_sum", 0.5, dtype="fp16"))
    assert half[key].dtype == torch.float16


def test_merge_refuses_other_families(tiny_model, tmp_path: Path) -> None:
    a = Path(shutil.copy(tiny_model("sd1"), tmp_path / "a.safetensors"))
    x = Path(shutil.copy(tiny_model("sdxl"), tmp_path / "x.safetensors"))
    with pytest.raises(MergeError, match="different families"):
        merge(MergeInputs(a, x, None, "weighted_sum", 0.5))
    with pytest.raises(MergeError, match="third checkpoint"):
        merge(MergeInputs(a, a, None, "add_difference", 0.5))


class _Evil:
    def __reduce__(self):  # a pickle that would run code when loaded
        return (os.system, (f"touch {os.environ['EVIL_MARKER']}",))


def test_hostile_pickle_is_refused_without_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "pwned"
    monkeypatch.setenv("EVIL_MARKER", str(marker))
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "callback": _Evil()}, str(evil))
    with pytest.raises(ConversionError, match="refused.*would run code"):
        read_pickled_tensors(evil)
    assert not marker.exists()
    plain = tmp_path / "plain.pt"
    with plain.open("wb") as handle:
        pickle.dump({"x": 1}, handle)
    with pytest.raises(ConversionError):
        read_pickled_tensors(plain)


def test_ckpt_tensors_and_ema(tmp_path: Path) -> None:
    ckpt = tmp_path / "m.ckpt"
    torch.save({"state_dict": {"model.diffusion_model.a.weight": torch.ones(2),
                               "model_ema.diffusion_modelaweight": torch.full((2,), 5.0),
                               "model_ema.decay": torch.tensor(0.99)}, "global_step": 10}, str(ckpt))
    state = read_pickled_tensors(ckpt)
    assert set(state) == {"model.diffusion_model.a.weight", "model_ema.diffusion_modelaweight", "model_ema.decay"}
    assert set(prune_ema(state)) == {"model.diffusion_model.a.weight"}
    assert prune_ema(state, use_ema=True)["model.diffusion_model.a.weight"].tolist() == [5.0, 5.0]


def test_merge_and_convert_jobs(studio_factory, tiny_model, tmp_path: Path) -> None:
    from modules.jobs.model import JobState
    from modules.jobs.submit import submit_job
    from modules.models.file_jobs import ConvertModelRequest, MergeModelsRequest

    def prepare(data: Path, ckpt: Path) -> None:
        _variant(tiny_model("sd1"), ckpt / "b.safetensors", 2.0)
        state = load_file(str(tiny_model("sd1")))
        torch.save({"state_dict": state}, str(ckpt / "old.ckpt"))

    srv = studio_factory(("--nowebui",), prepare=prepare, load=False)
    ctx = srv.ctx
    first = srv.checkpoints[0].name
    job = submit_job(ctx, MergeModelsRequest(primary=first, secondary="b.safetensors", multiplier=0.5,
                                             output="mixed"), owner="t", source="test")
    ctx.queue.wait(job.id, 120)
    assert job.state is JobState.SUCCEEDED, job.error
    assert ctx.catalog.find("mixed") is not None and job.lane == "models"
    conv = submit_job(ctx, ConvertModelRequest(source="old.ckpt"), owner="t", source="test")
    ctx.queue.wait(conv.id, 120)
    assert conv.state is JobState.SUCCEEDED, conv.error
    converted = load_file(str(ctx.paths.ckpt_dirs[0] / "old.safetensors"))
    original = load_file(str(tiny_model("sd1")))
    assert converted.keys() == original.keys() and all(torch.equal(converted[k], original[k]) for k in original)
    with pytest.raises(Exception, match="exists already"):
        submit_job(ctx, MergeModelsRequest(primary=first, secondary="b.safetensors", output="mixed"),
                   owner="t", source="test")
