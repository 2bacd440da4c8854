"""Where does the embedded model's layout come from: the position words or the initial noise?

Three probes of a checkpoint (the shipped one by default), each a number a better recipe has to move:

1. **Text encoder**: distance between the encoder outputs of prompts that differ only in position
   ("… at the top left" / "… at the bottom right") against prompts that differ only in colour or shape.
2. **UNet**: on single-shape renders noised to timestep t, the error of the model's clean-latent estimate with the
   right caption, with the same caption naming a wrong position, and with no position at all. A model that uses
   the position words does better with the right caption wherever the noisy input does not already show the layout.
3. **Sampling**: the same large red square prompted at each of the 9 positions with the same seeds; how often the
   judged position is the one asked for, and how often it is the same as with another position's prompt at the
   same seed (1.0 would mean the seed alone decides where the shape goes).

    .venv/bin/python -m bench.position_probe [--checkpoint PATH] [--no-docs]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import random
from pathlib import Path

import torch

from bench.adherence import CHECKPOINT, CLASSIFIER, POSITION_PHRASES, load_pipeline
from bench.report import machine_line, write_section
from modules.embedded.classifier import WorldClassifier
from modules.embedded.pipeline import generate
from modules.embedded.pool import render_pool
from modules.training.noise_training import encode_prompts, sd15_noise_scheduler
from modules.world.captions import full_caption
from modules.world.spec import HELD_OUT_SHAPE, POSITIONS

TIMESTEPS = (999, 900, 800, 600, 400)


def text_distances(pipe: object) -> dict[str, float]:
    """Mean L2 distance of the encoder's output tokens between prompt pairs differing in one attribute."""
    pairs = {
        "position": [("a large red square at the top left", "a large red square at the bottom right"),
                     ("a small blue circle on the left", "a small blue circle on the right"),
                     ("a green triangle at the top", "a green triangle at the bottom")],
        "colour": [("a large red square at the top left", "a large blue square at the top left"),
                   ("a small blue circle on the left", "a small yellow circle on the left"),
                   ("a green triangle at the top", "a purple triangle at the top")],
        "shape": [("a large red square at the top left", "a large red circle at the top left"),
                  ("a small blue circle on the left", "a small blue heart on the left"),
                  ("a green triangle at the top", "a green square at the top")],
    }
    out = {}
    with torch.no_grad():
        for kind, prompt_pairs in pairs.items():
            a = encode_prompts(pipe.tokenizer, pipe.text_encoder, [p for p, _ in prompt_pairs])
            b = encode_prompts(pipe.tokenizer, pipe.text_encoder, [q for _, q in prompt_pairs])
            out[kind] = float((a - b).norm(dim=-1).mean())
    return out


def x0_errors(pipe: object, size: int = 128) -> list[dict[str, float]]:
    """Per timestep: MSE of the clean-latent estimate with right / wrong / no position in the caption."""
    pool = render_pool(size, seed=4242, exclude_shapes=(HELD_OUT_SHAPE,), two_shape_prob=0.0)
    rng = random.Random(0)
    right, wrong, none = [], [], []
    for scene in pool.scenes:
        shape = scene.primary
        other = rng.choice([p for p in POSITIONS if p != shape.position])
        right.append(full_caption(scene))
        wrong.append(full_caption(dataclasses.replace(scene, shapes=(dataclasses.replace(shape, position=other),))))
        none.append(f"a {shape.size} {shape.colour} {shape.shape} on a {scene.background} background")
    scheduler = sd15_noise_scheduler(pipe.scheduler.config.prediction_type)
    alphas = scheduler.alphas_cumprod
    rows = []
    with torch.no_grad():
        latents = pipe.vae.encode(pool.pixels(torch.arange(size))).latent_dist.mean * pipe.vae.config.scaling_factor
        contexts = {k: encode_prompts(pipe.tokenizer, pipe.text_encoder, v)
                    for k, v in (("right", right), ("wrong", wrong), ("none", none))}
        noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(1))
        for t in TIMESTEPS:
            steps = torch.full((size,), t)
            noisy = scheduler.add_noise(latents, noise, steps)
            a = alphas[t]
            row: dict[str, float] = {"t": t, "snr": float(a / (1 - a))}
            for kind, context in contexts.items():
                out = pipe.unet(noisy, steps, context).sample
                if scheduler.config.prediction_type == "v_prediction":
                    x0 = a.sqrt() * noisy - (1 - a).sqrt() * out
                else:
                    x0 = (noisy - (1 - a).sqrt() * out) / a.sqrt()
                row[kind] = float(((x0 - latents) ** 2).mean())
            rows.append(row)
    return rows


def drawn_positions(pipe: object, judge: WorldClassifier, seeds: list[int]) -> dict[str, float]:
    """Asked-for rate, and how often two different asked positions give the same drawn one at the same seed."""
    drawn: dict[str, list[str]] = {}
    for position, phrase in POSITION_PHRASES.items():
        images = generate(pipe, [f"a large red square {phrase}"] * len(seeds), seeds)
        drawn[position] = [got["position"] for got in judge.predict(images)]
    asked = sum(p == position for position, ps in drawn.items() for p in ps) / (len(drawn) * len(seeds))
    same = [a == b for x, y in itertools.combinations(drawn, 2) for a, b in zip(drawn[x], drawn[y])]
    return {"asked": asked, "same_at_seed": sum(same) / len(same), "n": len(drawn) * len(seeds)}


def markdown(checkpoint: Path, distances: dict[str, float], errors: list[dict[str, float]],
             sampling: dict[str, float]) -> str:
    lines = [
        machine_line(),
        "",
        f"`{checkpoint.name}`. Reproduce: `.venv/bin/python -m bench.position_probe`.",
        "",
        "Text encoder, mean distance of the output tokens between prompts that differ in one word group: "
        f"position {distances['position']:.2f}, colour {distances['colour']:.2f}, shape {distances['shape']:.2f}.",
        "",
        "UNet, error of the clean-latent estimate on 128 single-shape renders noised to t (same noise for each "
        "caption):",
        "",
        "| t | SNR | right position | wrong position | no position |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [f"| {r['t']} | {r['snr']:.4f} | {r['right']:.3f} | {r['wrong']:.3f} | {r['none']:.3f} |" for r in errors]
    lines += [
        "",
        f"Sampling (DPM++ 2M, 20 steps, CFG 7; \"a large red square\" at each of the 9 positions, {sampling['n']} "
        f"images): drawn where asked {sampling['asked']:.0%} (chance 11%); two prompts asking for different places "
        f"draw the shape in the same place at the same seed {sampling['same_at_seed']:.0%} of the time.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=CHECKPOINT)
    parser.add_argument("--classifier", type=Path, default=CLASSIFIER)
    parser.add_argument("--seeds", default="0,1,2,3,4,5,6,7")
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()
    pipe = load_pipeline(args.checkpoint)
    distances = text_distances(pipe)
    print("text encoder distances", distances, flush=True)
    errors = x0_errors(pipe)
    for row in errors:
        print(row, flush=True)
    sampling = drawn_positions(pipe, WorldClassifier(args.classifier), [int(s) for s in args.seeds.split(",")])
    print("sampling", sampling, flush=True)
    if not args.no_docs:
        body = markdown(args.checkpoint, distances, errors, sampling)
        print(write_section("Embedded default: where the layout comes from (issue 3)", body))


if __name__ == "__main__":
    main()
