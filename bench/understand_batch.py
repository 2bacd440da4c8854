"""Batch captioning throughput on the CPU (``understand_batch_caption`` through the job queue, issue 26).

Renders N images of the default world (256×256 PNG) into a folder of a fresh studio's data dir, then runs
the job three times: a preview (nothing written), a write of every caption (.txt beside each image), and a
second write (resume: every image already has a caption, so all are skipped). Reports images per second of
each, with the offline default (the shapes classifier) at detail=tags and detail=detailed, and how many
tags name the rendered shape and colour. Writes its section of docs/benchmarks.md.

    .venv/bin/python -m bench.understand_batch [--images 200] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

from bench.report import machine_line, write_section

TITLE = "Image understanding: batch captioning throughput on CPU (issue 26)"


def _render(folder: Path, count: int) -> list[tuple[str, str, str]]:
    from modules.world.render import render_scene
    from modules.world.spec import Scene, Shape

    rng = random.Random(26)
    shapes, colours = ("circle", "square", "triangle", "star", "heart"), ("red", "green", "yellow", "purple")
    truth = []
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        shape, colour = rng.choice(shapes), rng.choice(colours)
        scene = Scene(background="blue" if colour != "blue" else "white",
                      shapes=(Shape(shape=shape, colour=colour, position="centre", size="large"),))
        name = f"{index:04d}.png"
        render_scene(scene, size=256).save(folder / name)
        truth.append((name, shape, colour))
    return truth


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    args = ap.parse_args()
    import torch

    from modules.app_context import create_app_context
    from modules.flags import parse_flags
    from modules.jobs.submit import submit_job
    from modules.understanding.tasks.batch_caption import BatchCaptionRequest

    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        truth = _render(data / "dataset", args.images)
        ctx = create_app_context(parse_flags(["--data-dir", str(data), "--skip-load-model-at-start", "--use-cpu",
                                              "all"]))
        try:
            def run(label: str, **fields: object) -> object:
                load = os.getloadavg()[0]
                job = submit_job(ctx, BatchCaptionRequest(folder="dataset", **fields), owner="bench")
                ctx.queue.wait(job.id, 3600)
                result = job.result
                rows.append((label, result.total, result.captioned, result.count("skipped"), result.seconds,
                             result.images_per_second if result.captioned else result.total / max(result.seconds,
                                                                                                  1e-6), load))
                print(label, result.text())
                return result

            run("warm-up (classifier load), preview of 4", limit=4)
            preview = run("preview, tags (nothing written)")
            run("write, tags", preview=False)
            run("resume: every .txt exists (all skipped)", preview=False)
            run("write, detailed (overwrite)", preview=False, overwrite=True, detail="detailed")
            captions = {item.name: item.caption for item in preview.items}
            named = sum(1 for name, shape, colour in truth
                        if f"{colour} {shape}" in captions.get(name, "").split(", "))
        finally:
            ctx.close()
    table = ["| run | images | captioned | skipped | seconds | images/s | load before |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    table += [f"| {label} | {total} | {done} | {skipped} | {seconds:.1f} | {rate:.1f} | {load:.1f} |"
              for label, total, done, skipped, seconds, rate, load in rows]
    body = "\n".join([
        machine_line() + f" torch threads: {args.threads}; the machine is shared (load varies), so the rates "
        "are indicative. `python -m bench.understand_batch`.",
        "",
        f"{args.images} renders of the default world (256×256 PNG) in a folder of the data dir, captioned by the "
        "`understand_batch_caption` job through the queue with the offline default (the shapes classifier); the "
        "write runs put a `.txt` beside each image (atomic writes), the resume run finds them all and skips.",
        "",
        *table,
        "",
        f"Tags naming the rendered colour and shape (`<colour> <shape>` among the tags): {named}/{len(truth)} "
        f"({named / len(truth):.3f}).",
        "",
        "The 1-minute load average before each run is shown: other work shares these 2 cores, and a run under a "
        "higher load is slower for that reason (writing a .txt of under 200 bytes costs little). "
        "A VLM backend (remote or local) is bounded by its generation time per image instead; the batch loop "
        "itself (open, caption, write) adds little beside the classifier.",
    ])
    write_section(TITLE, body)


if __name__ == "__main__":
    main()
