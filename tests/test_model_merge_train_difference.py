"""Train difference, the third merge mode (issue 28): against a hand computation, in a real checkpoint merge
with its recipe in the file's metadata, and refused without checkpoint C."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from modules.models.merge import MergeError, MergeInputs, merge, save_merged, train_difference


def test_train_difference_by_hand() -> None:
    a = torch.tensor([1.0, 0.0, 2.0, 5.0, 3.0])
    b = torch.tensor([3.0, 4.0, 2.0, 5.0, 1.0])
    c = torch.tensor([1.0, 0.0, 2.0, 1.0, 3.0])
    # element by element: d = B - C, share = |B - A| / (|B - C| + |B - A|), out = A + 1.8 * M * d * share
    #   0: d=2,  |B-A|=2, |B-C|=2 -> share 1/2 -> 1 + 1.8*0.5*2*0.5 = 1.9
    #   1: d=4,  |B-A|=4, |B-C|=4 -> share 1/2 -> 0 + 1.8*0.5*4*0.5 = 1.8
    #   2: d=0,  both 0            -> share 0   -> 2
    #   3: d=4,  |B-A|=0           -> share 0   -> 5   (A already sits at B: nothing added)
    #   4: d=-2, |B-A|=2, |B-C|=2 -> share 1/2 -> 3 + 1.8*0.5*(-2)*0.5 = 2.1
    out = train_difference(a, b, c, 0.5)
    assert torch.allclose(out, torch.tensor([1.9, 1.8, 2.0, 5.0, 2.1]), atol=1e-6), out
    # A far from B compared with C: nearly the whole difference (1.8 * M of it) goes in
    far = train_difference(torch.tensor([100.0]), torch.tensor([1.0]), torch.tensor([0.0]), 1.0)
    assert torch.allclose(far, torch.tensor([100.0 + 1.8 * 99.0 / 100.0]))
    assert train_difference(a.half(), b.half(), c.half(), 0.5).dtype == torch.float16
    assert not torch.isnan(train_difference(a, a, a, 1.0)).any()


def test_train_difference_merge_writes_its_recipe(tiny_model, tmp_path: Path) -> None:
    a = Path(shutil.copy(tiny_model("sd1"), tmp_path / "a.safetensors"))
    sa = load_file(str(a))
    gen = torch.Generator().manual_seed(0)
    sb = {k: (v + torch.randn(v.shape, generator=gen) * 0.1 if v.is_floating_point() else v) for k, v in sa.items()}
    sc = {k: (v + torch.randn(v.shape, generator=gen) * 0.1 if v.is_floating_point() else v) for k, v in sa.items()}
    b, c = tmp_path / "b.safetensors", tmp_path / "c.safetensors"
    save_file(sb, str(b))
    save_file(sc, str(c))
    inputs = MergeInputs(a, b, c, "train_difference", 0.4)
    out = merge(inputs)
    key = next(k for k, v in sa.items() if v.is_floating_point() and v.numel() > 4)
    fa, fb, fc = sa[key].float(), sb[key].float(), sc[key].float()
    expected = fa + 1.8 * 0.4 * (fb - fc) * (fb - fa).abs() / ((fb - fc).abs() + (fb - fa).abs())
    assert out[key].dtype == sa[key].dtype
    tolerance = 1e-6 if sa[key].dtype == torch.float32 else 2e-3  # the tiny model keeps its own precision
    assert torch.allclose(out[key].float(), expected, atol=tolerance, rtol=tolerance), (out[key] - expected).abs().max()
    added = merge(MergeInputs(a, b, c, "add_difference", 0.4))
    assert not torch.allclose(out[key], added[key])  # a mode of its own, not add difference again
    assert set(out) == set(sa)
    path = save_merged(tmp_path / "td.safetensors", out, inputs)
    with safe_open(str(path), "pt") as handle:
        recipe = json.loads(handle.metadata()["sd_merge_recipe"])
    assert recipe["interp_method"] == "Train difference" and recipe["tertiary_model"] == "c.safetensors"
    assert recipe["multiplier"] == 0.4 and recipe["train_difference_scale"] == 1.8
    with pytest.raises(MergeError, match="third checkpoint"):
        merge(MergeInputs(a, b, None, "train_difference", 0.4))


def test_the_request_offers_train_difference() -> None:
    from pydantic import ValidationError

    from modules.models.file_jobs import MergeModelsRequest

    req = MergeModelsRequest(primary="a", secondary="b", tertiary="c", method="train_difference", output="td")
    assert req.method == "train_difference"
    with pytest.raises(ValidationError):
        MergeModelsRequest(primary="a", secondary="b", method="train_sum", output="x")
