"""Teach the embedded default model its held-out star (issue 27's honest check, LoRA and textual inversion).

Five renders of the star (one colour each, not red) captioned "a <colour> sks shape" train a LoRA
(the ``train_lora`` trainer) and, separately, an embedding ``zwxstar`` (the ``train_embedding`` trainer,
captions "a <colour> zwxstar"). Judged by the shipped classifier on 64x64 images (DPM++ 2M, 20 steps,
CFG 7): the share of "a red sks shape" / "a blue sks shape" images classified as a star, before and after,
and the shape adherence of the trained shapes with the LoRA on (drift). Prints JSON.

    .venv/bin/python -m bench.train_star [--lora-steps 300] [--ti-steps 300] [--seeds 8]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from bench.adherence import CLASSIFIER, TRAINED_SHAPES
from modules.embedded.classifier import WorldClassifier
from modules.embedded.pipeline import generate
# the check's pieces live in modules/training/star_check.py (the shortened CI check imports them too)
from modules.training.star_check import load, make_dataset, star_rate


def adherence(pipe, judge: WorldClassifier, seeds: list[int]) -> float:
    hits = total = 0
    for shape in TRAINED_SHAPES:
        for got in judge.predict(generate(pipe, [f"a red {shape}"] * len(seeds), seeds, steps=20, guidance=7.0)):
            hits += int(got["shape"] == shape)
            total += 1
    return hits / total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lora-steps", type=int, default=300)
    parser.add_argument("--lora-lr", type=float, default=1e-3)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--ti-steps", type=int, default=300)
    parser.add_argument("--ti-lr", type=float, default=2e-2)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--ti-vectors", type=int, default=2)
    parser.add_argument("--skip", default="", help="lora,ti")
    args = parser.parse_args()
    from modules.jobs.progress import JobControl
    from modules.training.embedding_request import TrainEmbeddingRequest
    from modules.training.lora.dataset import load_dataset
    from modules.training.lora.request import TrainLoraRequest
    from modules.training.lora.session import Session
    from modules.training.lora.trainer import train
    from modules.training.textual_inversion import init_vectors, train_embedding

    seeds = list(range(100, 100 + args.seeds))
    judge = WorldClassifier(CLASSIFIER)
    work = Path(tempfile.mkdtemp(prefix="train-star-"))
    data = make_dataset(work / "star")
    cache = Path(__file__).resolve().parent.parent / "cache"
    out: dict[str, object] = {"torch_threads": torch.get_num_threads(), "seeds": seeds}
    prompts = ["a red sks shape", "a blue sks shape"]
    if "lora" not in args.skip:
        model, sampler = load(cache)
        model.pipeline.scheduler = sampler()
        out["before_star_rate"] = star_rate(model.pipeline, judge, prompts, seeds)
        out["before_adherence"] = adherence(model.pipeline, judge, seeds[:4])
        req = TrainLoraRequest(name="star", dataset=str(data), steps=args.lora_steps, rank=args.rank,
                               alpha=float(args.rank), learning_rate=args.lora_lr, checkpoint_every=10_000, seed=0)
        images = load_dataset(data, [work], 64, req.instance_prompt)
        started = time.perf_counter()
        outcome = train(req, model, images, Session.for_request(work / "data", req), JobControl())
        out["lora"] = {"steps": outcome.last_step, "lr": args.lora_lr, "rank": args.rank,
                       "seconds": round(time.perf_counter() - started, 1), "last_loss": outcome.losses[-1]}
        out["lora"]["star_rate"] = star_rate(model.pipeline, judge, prompts, seeds)
        out["lora"]["adherence"] = adherence(model.pipeline, judge, seeds[:4])
        print(json.dumps(out), flush=True)
    if "ti" not in args.skip:
        from modules.generation.addons.embeddings import Embedding, apply_embeddings, replace_names

        model, sampler = load(cache)
        req = TrainEmbeddingRequest(name="zwxstar", dataset=str(data), steps=args.ti_steps, learning_rate=args.ti_lr,
                                    num_vectors_per_token=args.ti_vectors, init_text="shape", caption_template="a {filewords} {token}",
                                    checkpoint_every=10_000)
        images = load_dataset(data, [work], 64, "")
        images = [type(i)(i.path, i.caption.split()[1], i.pixels) for i in images]  # the colour: "a blue {token}"
        started = time.perf_counter()
        outcome, vectors = train_embedding(req, model, images, Session.in_folder(work / "ti", req), JobControl(),
                                           init_vectors(model, req.init_text, req.vector_count()))
        seconds = round(time.perf_counter() - started, 1)
        model.pipeline.scheduler = sampler()
        seen: dict[str, int] = {}
        with apply_embeddings(model.pipeline, [Embedding("zwxstar", work / "zwxstar", {"": vectors})]) as names:
            rate = star_rate(model.pipeline, judge, replace_names(["a red zwxstar", "a blue zwxstar"], names), seeds,
                             seen=seen)
        out["ti"] = {"steps": outcome.last_step, "lr": args.ti_lr, "seconds": seconds,
                     "vectors": args.ti_vectors, "last_loss": outcome.losses[-1], "star_rate": rate,
                     "shapes_drawn": seen}
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
