"""Stage 3: train the world classifier (every shape, held-out star included) on fresh renders."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageFilter

from modules.embedded.classifier import (
    CLASSIFIER_CONFIG,
    SEARCH_WEIGHTS,
    WorldClassifier,
    build_classifier,
    build_processor,
    grouped_cross_entropy,
    groups_from_config,
)
from modules.embedded.config import RESOLUTION
from modules.embedded.pool import step_rng
from modules.training.loop import LoopConfig, TrainingRun, progress_log
from modules.world.dataset import image_to_tensor, scene_rng
from modules.world.render import render_scene
from modules.world.sampling import sample_scene, scene_labels
from modules.world.spec import LABEL_GROUPS


@dataclass(frozen=True)
class ClassifierRecipe:
    """Steps and batch of the classifier run.

    4500 steps since stop 21: 12.5 min in stop 22's timed run, shape head 98.1% (7500 steps: 22.3 min, 99.1%; every
    other head 100% either way; the goal is 95%). Lane B ends about 10 minutes sooner and lane A, then in its VAE
    refinement, trains on both cores from there."""

    loop: LoopConfig = LoopConfig(steps=4500, learning_rate=1e-3, warmup_steps=100, weight_decay=0.05,
                                  log_every=50, checkpoint_every=250)
    batch: int = 64
    seed: int = 100
    eval_seed: int = 999
    eval_size: int = 1000


def _gain_table(gain: float) -> list[int]:
    """The 8-bit lookup table v -> min(255, int(v * gain)), built in numpy (the same values as calling that
    per level, ~20x faster: the classifier's colour jitter was a third of its data time)."""
    return np.minimum(255, (np.arange(256, dtype=np.float64) * gain).astype(np.int64)).tolist()


def augment(image: Image.Image, rng: random.Random) -> Image.Image:
    """Blur and colour jitter so the classifier also reads soft, slightly off-colour generations."""
    if rng.random() < 0.6:
        image = image.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.3, 1.3)))
    if rng.random() < 0.5:
        gain = [rng.uniform(0.92, 1.08) for _ in range(3)]
        image = Image.merge("RGB", [band.point(_gain_table(g)) for band, g in zip(image.split(), gain)])
    return image


def labelled_batch(seed: int, step: int, batch: int, *, augmented: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Single-shape renders (pixels in [-1, 1]) and per-group target indices."""
    rng = step_rng(seed, step, "classifier")
    pixels, targets = [], {g: [] for g in LABEL_GROUPS}
    for i in range(batch):
        scene = sample_scene(scene_rng(seed, step * batch + i), max_shapes=1)
        image = render_scene(scene, RESOLUTION)
        if augmented:
            image = augment(image, rng)
        tensor = image_to_tensor(image)
        if augmented and rng.random() < 0.5:
            tensor = tensor + rng.uniform(0.0, 0.08) * torch.randn(tensor.shape, generator=torch.Generator().manual_seed(step * batch + i))
        pixels.append(tensor)
        for group, value in scene_labels(scene).items():
            if group in targets:
                targets[group].append(LABEL_GROUPS[group].index(value))
    return torch.stack(pixels), {g: torch.tensor(v) for g, v in targets.items()}


@torch.no_grad()
def per_head_accuracy(classifier: WorldClassifier, seed: int, size: int) -> dict[str, float]:
    """Accuracy of each head on `size` fresh single-shape renders drawn from `seed`."""
    correct = {g: 0 for g in LABEL_GROUPS}
    for start in range(0, size, 100):
        scenes = [sample_scene(scene_rng(seed, i), max_shapes=1) for i in range(start, min(start + 100, size))]
        predictions = classifier.predict([render_scene(s, RESOLUTION) for s in scenes])
        for scene, predicted in zip(scenes, predictions):
            truth = scene_labels(scene)
            for group in LABEL_GROUPS:
                correct[group] += int(predicted[group] == truth[group])
    return {g: c / size for g, c in correct.items()}


def train_classifier(
    work_dir: Path,
    cr: ClassifierRecipe = ClassifierRecipe(),
    *,
    config: dict[str, Any] = CLASSIFIER_CONFIG,
    log: bool = True,
) -> Path:
    """Train (or resume) in `work_dir/classifier-train`; saves model + processor + accuracy to `work_dir/classifier`."""
    torch.manual_seed(cr.seed)
    model = build_classifier(config)
    groups = groups_from_config(model.config)
    run = TrainingRun(models={"classifier": model}, config=cr.loop, work_dir=work_dir / "classifier-train")

    def step(i: int) -> tuple[torch.Tensor, dict[str, float]]:
        pixels, targets = labelled_batch(cr.seed, i, cr.batch, augmented=True)
        return grouped_cross_entropy(model(pixel_values=pixels).logits, targets, groups), {}

    run.run(step, on_log=progress_log("classifier", log))
    target = work_dir / "classifier"
    model.eval()
    model.config.atelier_search_weights = dict(SEARCH_WEIGHTS)
    model.save_pretrained(target)
    build_processor(RESOLUTION).save_pretrained(target)
    accuracy = per_head_accuracy(WorldClassifier(target), cr.eval_seed, cr.eval_size)
    (target / "accuracy.json").write_text(json.dumps(accuracy, indent=2))
    if log:
        print(f"[classifier] held-out accuracy {accuracy}", flush=True)
    return target
