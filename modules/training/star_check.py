"""The pieces of issue 27's honest check, shared by the benchmarks (``bench/train_star.py``,
``bench/dreambooth_star.py``) and the shortened check CI runs (``tests/test_train_learns_star.py``).

The embedded default model never saw a star (it is held out of its training world); five renders of a star
(one colour each, none red) captioned "a <colour> sks shape" are what training has to teach, and the shipped
classifier judges what the model draws for "a red sks shape" before and after. Heavy libraries are imported
inside the functions (this module is imported only by benchmarks and tests).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent.parent
CHECKPOINT = ROOT / "models" / "Stable-diffusion" / "atelier-shapes-v1.safetensors"
CLASSIFIER = ROOT / "models" / "classifier" / "atelier-shapes-vit"
COLOURS = ("blue", "yellow", "green", "purple", "orange")
BACKGROUNDS = ("white", "gray", "black", "white", "gray")


def make_dataset(folder: Path, count: int = len(COLOURS)) -> Path:
    """``count`` (at most 5) renders of the large centred star, each with its ``.txt`` caption "a <colour> sks
    shape"."""
    from modules.world.render import render_scene
    from modules.world.spec import Scene, Shape

    folder.mkdir(parents=True, exist_ok=True)
    for i, (colour, background) in enumerate(list(zip(COLOURS, BACKGROUNDS))[:count]):
        render_scene(Scene(background, (Shape("star", colour, "centre", "large"),))).save(folder / f"{i}.png")
        (folder / f"{i}.txt").write_text(f"a {colour} sks shape")
    return folder


def load(cache: Path, checkpoint: Path = CHECKPOINT) -> tuple[Any, Callable[[], Any]]:
    """(the embedded default loaded on the CPU, a factory of the DPM++ 2M scheduler the check samples with)."""
    from modules.generation.sampling.samplers import resolve_sampler
    from modules.models.loader import LoadOptions, load_model

    model = load_model(checkpoint, LoadOptions(cache_dir=cache))
    model.pipeline.set_progress_bar_config(disable=True)
    return model, lambda: resolve_sampler("DPM++ 2M").build(model.scheduler_config, model.prediction_type)


def star_rate(pipe: Any, judge: Any, prompts: list[str], seeds: list[int], shape: str = "star",
              seen: dict[str, int] | None = None, steps: int = 20) -> float:
    """The share of images of ``prompts`` x ``seeds`` (CFG 7, ``steps`` steps) that ``judge`` (the shipped
    :class:`~modules.embedded.classifier.WorldClassifier`) calls ``shape``; ``seen`` counts every shape drawn."""
    from modules.embedded.pipeline import generate

    hits = total = 0
    for prompt in prompts:
        for got in judge.predict(generate(pipe, [prompt] * len(seeds), seeds, steps=steps, guidance=7.0)):
            hits += int(got["shape"] == shape)
            total += 1
            if seen is not None:
                seen[got["shape"]] = seen.get(got["shape"], 0) + 1
    return hits / total
