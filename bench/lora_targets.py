"""LoRA training step time by model and target (issue 27): SD 1.x and SDXL, UNet only or UNet + text encoder(s).

Runs the studio's own trainer (:func:`modules.training.lora.trainer.train`, TensorBoard logging on as always) on
the tiny test models of ``tests/fixtures/tiny_models.py`` (random weights, real block topology), one torch thread,
the configurations interleaved round by round so that a busy machine slows them alike; reports the median
seconds per step (the first step of each run, which encodes the dataset, left out) and each configuration's
ratio to SD 1.x UNet-only, plus the cost of one TensorBoard scalar write. Tiny models say how the
configurations compare, not how long a real SDXL LoRA takes.

    python -m bench.lora_targets [--steps 8] [--rounds 3] [--no-docs]

Writes the "LoRA training: SDXL and text-encoder targets (issue 27)" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

TITLE = "LoRA training: SDXL and text-encoder targets (issue 27)"
CONFIGS = (("sd1", False), ("sd1", True), ("sdxl", False), ("sdxl", True))


def _images(folder: Path) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(4):
        picture = Image.new("RGB", (96, 64), (40 * i, 200, 90))
        picture.paste((250, 20, 20), (20 + 8 * i, 16, 60, 48))
        picture.save(folder / f"{i}.png")


def _run(checkpoint: Path, cache: Path, root: Path, name: str, te: bool, steps: int) -> list[float]:
    from modules.jobs.progress import JobControl
    from modules.models.loader import LoadOptions, load_model
    from modules.training.lora.dataset import load_dataset
    from modules.training.lora.request import TrainLoraRequest
    from modules.training.lora.session import Session
    from modules.training.lora.trainer import train

    model = load_model(checkpoint, LoadOptions(cache_dir=cache))
    req = TrainLoraRequest(name=name, dataset="set", steps=steps + 1, seed=0, rank=4, alpha=4.0,
                           train_text_encoder=te, checkpoint_every=steps + 1)
    images = load_dataset(root / "set", [root], 64, req.instance_prompt)
    stamps: list[float] = []
    train(req, model, images, Session.for_request(root / "data", req), JobControl(),
          on_log=lambda step, loss: stamps.append(time.perf_counter()))
    return [b - a for a, b in zip(stamps, stamps[1:])]  # per step, the first (with the encoding) left out


def _tensorboard_write_ms(root: Path, count: int = 2000) -> float:
    from modules.training.lora.tensorboard import TensorBoardLog

    board = TensorBoardLog(root / "tb-bench")
    started = time.perf_counter()
    for step in range(count):
        board.scalars(step, loss=0.1, lr=1e-4)
    board.close()
    return (time.perf_counter() - started) / count * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="timed steps per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-docs", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()

    import torch

    from bench.report import machine_line, write_section
    from tests.fixtures.tiny_models import build_tiny_checkpoint

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="lora-bench-") as tmp:
        root, cache = Path(tmp), Path(tmp) / "cache"
        cache.mkdir()
        _images(root / "set")
        checkpoints = {family: build_tiny_checkpoint(family, root / family, cache_dir=cache)
                       for family in {family for family, _ in CONFIGS}}
        times: dict[tuple[str, bool], list[float]] = {config: [] for config in CONFIGS}
        for round_no in range(args.rounds):
            for family, te in CONFIGS:
                name = f"{family}-{'te' if te else 'unet'}-{round_no}"
                times[(family, te)] += _run(checkpoints[family], cache, root, name, te, args.steps)
                print(f"round {round_no + 1}: {name} median {statistics.median(times[(family, te)]):.3f} s/step",
                      flush=True)
        tb_ms = _tensorboard_write_ms(root)
    base = statistics.median(times[CONFIGS[0]])
    rows = ["| model | trains | median s/step | ratio to SD 1.x UNet only |", "| --- | --- | --- | --- |"]
    for family, te in CONFIGS:
        median = statistics.median(times[(family, te)])
        rows.append(f"| tiny {'SDXL' if family == 'sdxl' else 'SD 1.x'} | {'UNet + text encoder(s)' if te else 'UNet'} "
                    f"| {median:.3f} | {median / base:.2f} |")
    body = "\n".join([
        f"`python -m bench.lora_targets --steps {args.steps} --rounds {args.rounds}`: the studio's LoRA trainer "
        "(rank 4, batch 1, 64 px, TensorBoard on) on the tiny test models, one torch thread, the four configurations "
        f"interleaved over {args.rounds} rounds of {args.steps} timed steps each. Tiny random-weight models: the ratios "
        "say what the text encoders and SDXL's second encoder add, not how long a real run takes. The machine is "
        "shared (about eight sessions on two cores): absolute times are noisy, the ratios less so.",
        "", *rows, "",
        f"One TensorBoard scalar write (loss or lr) costs {tb_ms:.3f} ms; a step writes two.",
        "", machine_line()])
    print(body)
    if not args.no_docs:
        print("wrote", write_section(TITLE, body))


if __name__ == "__main__":
    main()
