"""Watching a training session (issue 27): steps/s and ETA from the loss log (a resume's gap cut out) and
the loss plot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from modules.training.monitor import loss_plot, read_log, speed


def test_speed_and_eta_from_the_log() -> None:
    records = [{"step": s, "loss": 1.0 / s, "time": 100.0 + 0.5 * s} for s in range(1, 11)]
    got = speed(records, 20)
    assert got.step == 10 and abs(got.steps_per_second - 2.0) < 1e-9 and abs(got.eta_seconds - 5.0) < 1e-9
    assert got.text() == "step 10/20 · 2.00 steps/s · ETA 0:05"
    # resumed an hour later from step 8: only the new run's pace counts
    resumed = records[:8] + [{"step": s, "loss": 0.1, "time": 4000.0 + 0.25 * s} for s in range(9, 13)]
    assert abs(speed(resumed, 20).steps_per_second - 4.0) < 1e-9
    assert speed([], 5).text() == "step 0/5"
    assert speed(records[:1], 5).steps_per_second is None


def test_loss_plot_and_log_reading(tmp_path: Path) -> None:
    lines = [json.dumps({"step": s, "loss": 1.0 - 0.05 * s}) for s in range(1, 11)]
    (tmp_path / "loss.jsonl").write_text("\n".join(lines[:5] + ["{broken", '{"step": 1}'] + lines[5:]) + "\n")
    records = read_log(tmp_path)
    assert [r["step"] for r in records] == list(range(1, 11))
    pixels = np.asarray(loss_plot(records), dtype=int)
    curve = np.abs(pixels - (234, 88, 12)).sum(axis=2) < 30
    ys, xs = np.nonzero(curve)
    assert curve.sum() > 50
    # a falling loss: the curve's right end lies lower in the image (larger y) than its left end
    assert ys[xs > xs.max() - 10].mean() > ys[xs < xs.min() + 10].mean()
    blank = np.asarray(loss_plot([]), dtype=int)
    assert (np.abs(blank - (234, 88, 12)).sum(axis=2) < 30).sum() == 0
