"""Train every embedded default model from scratch: `python -m modules.embedded.train_all --out .embedded-work`.

Stages (each resumable, each skipped when its output folder exists): text_encoder, vae, vae_refine, t2i,
vae_decoder, classifier, controlnet, export. Every stage trains with one torch thread by default; `--lanes 2` (the
default) runs two processes side by side on the 2-core machine, each a chain of stages (`lanes`): lane A trains
the VAE (and refines it with an edge loss if the recipe says `refine_latent_vae`), then (once the text encoder
exists) trains the UNet on its latents, then the ControlNet; lane B pretrains the text encoder, trains the
classifier, then, if the recipe says `refine_decoder`, (once lane A's VAE exists) sharpens the VAE decoder with the
encoder frozen. When lane B is done, lane A takes its core too (`CoreHandover`: torch threads 1 -> 2 at the next
log line, in whichever stage lane A is in). The export runs when both lanes are done.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL

from modules.embedded.config import HELD_OUT_SHAPES, RESOLUTION, Recipe
from modules.embedded.pool import render_pool
from modules.embedded.train_vae import latent_vae_dir, refine_vae, train_vae

STAGES: tuple[str, ...] = ("text_encoder", "vae", "vae_refine", "t2i", "vae_decoder", "classifier", "controlnet",
                           "export")
# The folder each stage writes when it is done (a stage whose folder exists is skipped).
STAGE_OUTPUT: dict[str, str] = {"text_encoder": "text-encoder", "vae": "vae", "vae_refine": "vae-refined", "t2i": "t2i",
                                "vae_decoder": "vae-decoder", "classifier": "classifier", "controlnet": "controlnet"}
WAIT_SECONDS = 4 * 3600
# Written by `run_lanes` once lane B's process has exited; lane A takes the second core when it appears.
LANE_B_DONE = "lane-b.done"


def lanes(recipe: Recipe) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The two chains of stages `run_lanes` runs side by side: lane A is the critical path (VAE, UNet,
    ControlNet), lane B what can run beside it (text encoder, classifier, and the decoder refinement if the recipe
    has one)."""
    lane_a = ("vae", "vae_refine", "t2i", "controlnet") if recipe.refine_latent_vae else ("vae", "t2i", "controlnet")
    lane_b = ("text_encoder", "classifier") + (("vae_decoder",) if recipe.refine_decoder else ())
    return lane_a, lane_b


def recipe_stages(recipe: Recipe) -> tuple[str, ...]:
    """Every stage the recipe uses, in `STAGES` order: what one process runs in turn (`--lanes 1`)."""
    lane_a, lane_b = lanes(recipe)
    return tuple(stage for stage in STAGES if stage in (*lane_a, *lane_b, "export"))


def cross_lane_inputs(recipe: Recipe) -> dict[str, str]:
    """Stages that start from another lane's output, and that stage (they wait for its folder): the decoder
    refinement starts from the VAE whose latents the UNet learns (the refined one, if the recipe refines it);
    the UNet trains against the pretrained text encoder, if the recipe pretrains one."""
    inputs = {}
    if recipe.refine_decoder:
        inputs["vae_decoder"] = "vae_refine" if recipe.refine_latent_vae else "vae"
    if recipe.pretrain_text_encoder:
        inputs["t2i"] = "text_encoder"
    return inputs


@dataclass
class CoreHandover:
    """Raise this process's torch threads to `threads` once `done_marker` (written when the other lane has exited)
    exists.

    Called from a training loop's log hook, i.e. in the thread that trains (torch's thread count is per thread).
    """

    done_marker: Path
    threads: int
    taken: bool = False

    def __call__(self) -> None:
        if self.taken or not self.done_marker.exists():
            return
        torch.set_num_threads(self.threads)
        self.taken = True
        print(f"[lanes] {self.done_marker.name}: the other lane is done, training on {self.threads} threads from now",
              flush=True)


def _wait_for(folder: Path, seconds: float = WAIT_SECONDS) -> None:
    """Block until another lane has written `folder` (the VAE that decoder refinement starts from, the text encoder
    that the UNet trains against)."""
    deadline = time.monotonic() + seconds
    while not folder.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up waiting for {folder} (is the other lane running?)")
        time.sleep(10)


def run_lanes(out: Path, threads: int, models_dir: Path) -> None:
    """Run `lanes(Recipe())` as two child processes, then export; the wall-clock time goes to timings.json."""
    start = time.perf_counter()
    lane_a, lane_b = lanes(Recipe())
    out.mkdir(parents=True, exist_ok=True)
    marker = out / LANE_B_DONE
    marker.unlink(missing_ok=True)
    handover = ["--take-cores-after", str(marker), "--cores", str(2 * threads)] if threads else []
    children = [
        subprocess.Popen([sys.executable, "-m", "modules.embedded.train_all", "--out", str(out),
                          "--threads", str(threads), "--stages", ",".join(lane)] + extra)
        for lane, extra in ((lane_a, handover), (lane_b, []))
    ]
    lane_b_code = children[1].wait()
    if lane_b_code == 0:
        marker.touch()  # lane B's process has exited: its core is free
    codes = [children[0].wait(), lane_b_code]
    if any(codes):
        raise SystemExit(f"a training lane failed (exit codes {codes}); re-run the same command to resume")
    _record_time(out, "wall_two_lanes", time.perf_counter() - start)
    main(["--out", str(out), "--stages", "export", "--models-dir", str(models_dir)])


def _record_time(out: Path, stage: str, seconds: float) -> None:
    path = out / "timings.json"
    timings = json.loads(path.read_text()) if path.exists() else {}
    timings[stage] = timings.get(stage, 0.0) + seconds
    path.write_text(json.dumps(timings, indent=2))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path(".embedded-work"))
    parser.add_argument("--stages", default=None, help="comma-separated subset of " + ",".join(STAGES)
                        + ", run in order in this process (default: every stage, in two lanes)")
    parser.add_argument("--models-dir", type=Path, default=Path("models"),
                        help="where the export stage writes the models (default: the studio's models/)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (0 = torch default)")
    parser.add_argument("--lanes", type=int, choices=(1, 2), default=None,
                        help="2 (default without --stages): two processes side by side (see lanes()); "
                             "1: the stages in order in this process")
    parser.add_argument("--take-cores-after", type=Path, default=None,
                        help="when this file exists (the other lane has exited), train on --cores threads")
    parser.add_argument("--cores", type=int, default=2, help="threads to train on after --take-cores-after")
    args = parser.parse_args(argv)
    if (args.lanes or (1 if args.stages else 2)) == 2:
        run_lanes(args.out, args.threads, args.models_dir)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = Recipe()
    stages = [s for s in args.stages.split(",") if s] if args.stages else list(recipe_stages(recipe))
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        parser.error(f"unknown stage(s) {', '.join(unknown)}; choose from {', '.join(STAGES)}")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    tick = CoreHandover(args.take_cores_after, args.cores) if args.take_cores_after else None
    t2i_pool = None

    def pool() -> object:
        nonlocal t2i_pool
        if t2i_pool is None:
            t2i_pool = render_pool(
                recipe.pool_size, seed=recipe.seed, resolution=RESOLUTION, exclude_shapes=HELD_OUT_SHAPES,
                two_shape_prob=recipe.two_shape_prob,
            )
        return t2i_pool

    for stage in stages:
        if stage != "export" and (out / STAGE_OUTPUT[stage]).exists():
            print(f"[{stage}] already done, skipped", flush=True)
            continue
        needed = cross_lane_inputs(recipe).get(stage)
        if needed:
            _wait_for(out / STAGE_OUTPUT[needed])
        if tick:
            tick()
        start = time.perf_counter()
        if stage == "text_encoder":
            from modules.embedded.train_text_encoder import train_text_encoder

            train_text_encoder(out, recipe, HELD_OUT_SHAPES, tick=tick)
        elif stage == "vae":
            train_vae(pool(), out, recipe, tick=tick)
        elif stage == "vae_refine":
            refine_vae(pool(), out, recipe, tick=tick)
        elif stage == "t2i":
            from modules.embedded.train_t2i import train_t2i

            train_t2i(pool(), AutoencoderKL.from_pretrained(latent_vae_dir(out)), out, recipe, tick=tick)
        elif stage == "vae_decoder":
            from modules.embedded.train_vae import finetune_decoder

            finetune_decoder(pool(), out, recipe, tick=tick)
        elif stage == "classifier":
            from modules.embedded.train_classifier import train_classifier

            train_classifier(out)
        elif stage == "controlnet":
            from modules.embedded.train_controlnet import train_controlnet

            train_controlnet(pool(), out, tick=tick)
        else:
            from modules.embedded.export import export_all

            export_all(out, args.models_dir)
        _record_time(out, stage, time.perf_counter() - start)


if __name__ == "__main__":
    main()
