"""Samplers side by side on the embedded default model: shape+colour match of the adherence prompts.

Every sampler draws the same 28 shape+colour prompts (`bench.adherence.shape_colour_prompts`) with the same seeds,
20 steps, CFG 7, through the studio's loader and sampler registry; the embedded classifier judges. Seeds are
reported in two halves so that a choice made on the first half can be checked on the second. Writes the
"Embedded default: samplers side by side" section of docs/benchmarks.md.

    .venv/bin/python -m bench.samplers_embedded [--seeds 0-15] [--samplers "DPM++ 2M,Euler,..."] [--no-docs]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench.adherence import CHECKPOINT, CLASSIFIER, ROOT, shape_colour_prompts
from bench.report import machine_line, write_section
from modules.embedded.classifier import WorldClassifier
from modules.embedded.pipeline import generate
from modules.generation.requests import DEFAULT_SAMPLER
from modules.generation.sampling.samplers import resolve_sampler
from modules.models.loader import LoadOptions, load_model
from modules.world.captions import parse_prompt_to_labels

SAMPLERS = ("DPM++ 2M", "Euler", "Euler a", "DDIM", "Heun", "UniPC")


def _seeds(text: str) -> list[int]:
    if "-" in text:
        first, last = (int(x) for x in text.split("-"))
        return list(range(first, last + 1))
    return [int(s) for s in text.split(",")]


def matches(pipe: object, judge: WorldClassifier, seeds: list[int], steps: int, cfg: float) -> list[bool]:
    """One verdict per (prompt, seed), prompt-major: shape and colour both as asked."""
    verdicts = []
    for prompt in shape_colour_prompts():
        asked = parse_prompt_to_labels(prompt)
        batch = generate(pipe, [prompt] * len(seeds), seeds, steps=steps, guidance=cfg)
        verdicts += [got["shape"] == asked["shape"] and got["colour"] == asked["colour"] for got in judge.predict(batch)]
    return verdicts


def run(args: argparse.Namespace) -> list[dict[str, object]]:
    seeds = _seeds(args.seeds)
    half = len(seeds) // 2
    loaded = load_model(args.checkpoint, LoadOptions(cache_dir=ROOT / "cache"))
    pipe = loaded.pipeline
    pipe.set_progress_bar_config(disable=True)
    judge = WorldClassifier(args.classifier)
    rows = []
    for name in args.samplers.split(","):
        pipe.scheduler = resolve_sampler(name.strip()).build(loaded.scheduler_config, loaded.prediction_type)
        start = time.perf_counter()
        verdicts = matches(pipe, judge, seeds, args.steps, args.cfg)
        seconds = (time.perf_counter() - start) / len(verdicts)
        by_seed = [verdicts[i::len(seeds)] for i in range(len(seeds))]  # prompt-major -> per seed
        first = sum(sum(v) for v in by_seed[:half]) / sum(len(v) for v in by_seed[:half])
        second = sum(sum(v) for v in by_seed[half:]) / sum(len(v) for v in by_seed[half:])
        row = {"sampler": name.strip(), "all": sum(verdicts) / len(verdicts), "first": first, "second": second,
               "n": len(verdicts), "seconds_per_image": seconds}
        print(row, flush=True)
        rows.append(row)
    return rows


def markdown(rows: list[dict[str, object]], args: argparse.Namespace) -> str:
    seeds = _seeds(args.seeds)
    half = len(seeds) // 2
    lines = [
        machine_line(),
        "",
        f"`atelier-shapes-v1` through the studio loader and sampler registry, the 28 shape+colour prompts of "
        f"`bench/adherence.py`, {args.steps} steps, CFG {args.cfg}, seeds {seeds[0]}–{seeds[-1]}, judged by "
        f"`atelier-shapes-vit`. Reproduce: `.venv/bin/python -m bench.samplers_embedded`.",
        "",
        f"| sampler | shape+colour, all seeds | seeds {seeds[0]}–{seeds[half - 1]} | seeds {seeds[half]}–{seeds[-1]} "
        "| s/image (16 per call) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        default = " (the studio's default)" if row["sampler"] == DEFAULT_SAMPLER else ""
        lines.append(f"| {row['sampler']}{default} | {row['all']:.1%} of {row['n']} | {row['first']:.1%} "
                     f"| {row['second']:.1%} | {row['seconds_per_image']:.2f} |")
    lines += [
        "",
        "Each half has 224 images, so a difference of a few points between samplers is within the noise: pick on one "
        "half, check on the other. Heun evaluates the model twice per step.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=CHECKPOINT)
    parser.add_argument("--classifier", type=Path, default=CLASSIFIER)
    parser.add_argument("--seeds", default="0-15")
    parser.add_argument("--samplers", default=",".join(SAMPLERS))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--cfg", type=float, default=7.0)
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()
    rows = run(args)
    if not args.no_docs:
        print(write_section("Embedded default: samplers side by side (issue 3)", markdown(rows, args)))


if __name__ == "__main__":
    main()
