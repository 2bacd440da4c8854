"""Teach the embedded default model its held-out star by DreamBooth, with and without prior preservation
(issue 27's honest check for DreamBooth; the LoRA and textual-inversion runs are in ``bench/train_star.py``).

Five renders of the star (one colour each, not red) captioned "a <colour> sks shape" fine-tune the UNet with
the ``train_dreambooth`` trainer; with prior preservation, class images of "a shape" are made first by the
base model (the job makes them through queued txt2img jobs; here the same pipeline draws them directly, with
the job's seeds); ``--class-set shapes`` makes them from one "a <colour> <shape>" prompt per image over the
trained shapes instead (what several class prompts, one a line, do in the job). Judged by the shipped classifier as in ``bench.train_star``: the share of "a red sks shape"
/ "a blue sks shape" images classified as a star, and the adherence of "a red <shape>" for the 7 trained
shapes (drift). Prints JSON, one line per finished run.

    .venv/bin/python -m bench.dreambooth_star [--steps 300] [--lr 1e-4] [--class-images 20] [--skip base,prior,plain]
                                              [--class-set prompt|shapes]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from bench.adherence import CLASSIFIER
from bench.train_star import adherence, load, make_dataset, star_rate
from modules.embedded.classifier import WorldClassifier
from modules.embedded.pipeline import generate


def class_images(pipe, folder: Path, prompt: str, count: int, seed: int, shapes: bool = False) -> Path:
    """``count`` class images of ``prompt`` (the job's way); with ``shapes``, one prompt per image instead,
    "a <colour> <shape>" over the trained shapes and non-red colours, written as the image's ``.txt`` caption
    (the trainer reads captions beside class images as beside instance images)."""
    from bench.adherence import TRAINED_SHAPES
    from modules.training.dreambooth.class_images import save_image

    colours = ("blue", "green", "yellow", "purple", "orange")
    folder.mkdir(parents=True, exist_ok=True)
    prompts = [f"a {colours[i % len(colours)]} {TRAINED_SHAPES[i % len(TRAINED_SHAPES)]}" if shapes else prompt
               for i in range(count)]
    for index in range(0, count, 8):
        seeds = list(range(seed + index, seed + min(count, index + 8)))
        batch = prompts[index:index + len(seeds)]
        for offset, image in enumerate(generate(pipe, batch, seeds, steps=20, guidance=7.0)):
            path = save_image(folder, index + offset, image)
            if shapes:
                path.with_suffix(".txt").write_text(batch[offset])
    return folder


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--class-images", type=int, default=20)
    parser.add_argument("--prior-weight", type=float, default=1.0)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--skip", default="", help="base,prior,plain")
    parser.add_argument("--class-set", choices=("prompt", "shapes"), default="prompt",
                        help="prompt: every class image from 'a shape' (the job's way); shapes: one 'a <colour> "
                             "<shape>' per image over the trained shapes, captioned so")
    args = parser.parse_args()
    from modules.jobs.progress import JobControl
    from modules.training.dreambooth.request import TrainDreamboothRequest
    from modules.training.dreambooth.trainer import train
    from modules.training.lora.dataset import load_dataset
    from modules.training.lora.session import Session

    seeds = list(range(100, 100 + args.seeds))
    judge = WorldClassifier(CLASSIFIER)
    work = Path(tempfile.mkdtemp(prefix="dreambooth-star-"))
    data = make_dataset(work / "star")
    cache = Path(__file__).resolve().parent.parent / "cache"
    prompts = ["a red sks shape", "a blue sks shape"]
    out: dict[str, object] = {"torch_threads": torch.get_num_threads(), "seeds": seeds, "steps": args.steps,
                              "lr": args.lr}
    if "base" not in args.skip:
        model, sampler = load(cache)
        model.pipeline.scheduler = sampler()
        out["base"] = {"star_rate": star_rate(model.pipeline, judge, prompts, seeds),
                       "adherence": adherence(model.pipeline, judge, seeds[:4])}
        print(json.dumps(out), flush=True)
    for run in ("prior", "plain"):
        if run in args.skip:
            continue
        model, sampler = load(cache)
        model.pipeline.scheduler = sampler()
        extra: dict[str, object] = {"num_class_images": 0}
        classes = []
        started = time.perf_counter()
        if run == "prior":
            extra = {"num_class_images": args.class_images, "class_prompt": "a shape",
                     "prior_loss_weight": args.prior_weight}
            folder = class_images(model.pipeline, work / "class", "a shape", args.class_images, seed=0,
                                  shapes=args.class_set == "shapes")
            classes = load_dataset(folder, [work], 64, "a shape")
        class_seconds = time.perf_counter() - started
        req = TrainDreamboothRequest(name=f"star-{run}", dataset=str(data), steps=args.steps, learning_rate=args.lr,
                                     checkpoint_every=100_000, seed=0, mixed_precision="no", **extra)
        images = load_dataset(data, [work], 64, req.instance_prompt)
        started = time.perf_counter()
        outcome = train(req, model, images, classes, Session.in_folder(work / run, req), JobControl())
        seconds = time.perf_counter() - started
        model.pipeline.scheduler = sampler()
        seen: dict[str, int] = {}
        out[run] = {"class_images": len(classes), "class_set": args.class_set if classes else None,
                    "class_seconds": round(class_seconds, 1),
                    "train_seconds": round(seconds, 1), "last_loss": outcome.losses[-1],
                    "star_rate": star_rate(model.pipeline, judge, prompts, seeds, seen=seen), "shapes_drawn": seen,
                    "adherence": adherence(model.pipeline, judge, seeds[:4])}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
