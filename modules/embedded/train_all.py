"""Train every embedded default model from scratch: `python -m modules.embedded.train_all --out .embedded-work`.

Stages (each resumable, each skipped when its output folder exists): vae, t2i, vae_decoder, classifier,
controlnet, export. `vae_decoder` only needs `vae`, so it can run in a second process beside `t2i`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from diffusers import AutoencoderKL

from modules.embedded.config import HELD_OUT_SHAPES, RESOLUTION, Recipe
from modules.embedded.pool import render_pool
from modules.embedded.train_vae import train_vae

STAGES: tuple[str, ...] = ("vae", "t2i", "vae_decoder", "classifier", "controlnet", "export")


def _record_time(out: Path, stage: str, seconds: float) -> None:
    path = out / "timings.json"
    timings = json.loads(path.read_text()) if path.exists() else {}
    timings[stage] = timings.get(stage, 0.0) + seconds
    path.write_text(json.dumps(timings, indent=2))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path(".embedded-work"))
    parser.add_argument("--stages", default=",".join(STAGES), help="comma-separated subset of " + ",".join(STAGES))
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    stages = [s for s in args.stages.split(",") if s]
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    recipe = Recipe()
    t2i_pool = None

    def pool() -> object:
        nonlocal t2i_pool
        if t2i_pool is None:
            t2i_pool = render_pool(
                recipe.pool_size, seed=recipe.seed, resolution=RESOLUTION, exclude_shapes=HELD_OUT_SHAPES,
                two_shape_prob=0.15,
            )
        return t2i_pool

    for stage in stages:
        start = time.perf_counter()
        if stage == "vae" and not (out / "vae").exists():
            train_vae(pool(), out, recipe)
        elif stage == "t2i" and not (out / "t2i").exists():
            from modules.embedded.train_t2i import train_t2i

            train_t2i(pool(), AutoencoderKL.from_pretrained(out / "vae"), out, recipe)
        elif stage == "vae_decoder" and not (out / "vae-decoder").exists():
            from modules.embedded.train_vae import finetune_decoder

            finetune_decoder(pool(), out, recipe)
        elif stage == "classifier" and not (out / "classifier").exists():
            from modules.embedded.train_classifier import train_classifier

            train_classifier(out)
        elif stage == "controlnet" and not (out / "controlnet").exists():
            from modules.embedded.train_controlnet import train_controlnet

            train_controlnet(pool(), out)
        elif stage == "export":
            from modules.embedded.export import export_all

            export_all(out, Path("models"))
        else:
            print(f"[{stage}] already done, skipped", flush=True)
            continue
        _record_time(out, stage, time.perf_counter() - start)


if __name__ == "__main__":
    main()
