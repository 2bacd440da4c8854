"""Issue 27's honest check, shortened for CI: a LoRA trained for a few steps on five renders of the star the
embedded default never saw makes the shipped classifier see a star in more "a red sks shape" images than before.

The full check is ``bench/train_star.py`` (600 steps: 81% stars, docs/benchmarks.md). Here: rank 8, batch 2,
learning rate 5e-3, 100 steps, 16 images of 10 sampling steps judged before and after. Measured on the 2-core
machine (2026-12-07): 1/16 stars before, 9/16 after (train 7-8 s, the whole test about 13 s); the bound asks
for at least 4 more stars out of 16 (half the measured gain). A LoRA that does not learn (a learning rate of
1e-7, tried) stays at 1/16 and fails it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from modules.jobs.progress import JobControl
from modules.training.lora.dataset import load_dataset
from modules.training.lora.request import TrainLoraRequest
from modules.training.lora.session import Session
from modules.training.lora.trainer import train
from modules.training.star_check import CHECKPOINT, CLASSIFIER, load, make_dataset, star_rate

SEEDS = list(range(100, 116))
PROMPTS = ["a red sks shape"]
#: stars gained out of 16 that the check asks for (measured: 8)
MIN_GAIN = 4 / 16


@pytest.mark.slow  # worker processes / trains the embedded default
def test_a_short_lora_run_teaches_the_held_out_star(tmp_path: Path, model_cache_dir: Path) -> None:
    from modules.embedded.classifier import WorldClassifier

    assert CHECKPOINT.is_file() and CLASSIFIER.is_dir(), "the embedded default ships with the repository"
    judge = WorldClassifier(CLASSIFIER)
    data = make_dataset(tmp_path / "star")
    model, sampler = load(model_cache_dir)
    model.pipeline.scheduler = sampler()
    before = star_rate(model.pipeline, judge, PROMPTS, SEEDS, steps=10)

    req = TrainLoraRequest(name="star", dataset=str(data), steps=100, rank=8, alpha=8.0, batch_size=2,
                           learning_rate=5e-3, checkpoint_every=10_000, seed=0)
    images = load_dataset(data, [tmp_path], 64, req.instance_prompt)
    outcome = train(req, model, images, Session.for_request(tmp_path / "data", req), JobControl())
    assert outcome.last_step == 100
    model.pipeline.scheduler = sampler()
    seen: dict[str, int] = {}
    after = star_rate(model.pipeline, judge, PROMPTS, SEEDS, seen=seen, steps=10)
    assert after - before >= MIN_GAIN, f"stars before {before:.0%}, after {after:.0%} (drawn: {seen})"
