"""LoRA training on 2 CPU processes (gloo) against one process, side by side, on the embedded default.

Three runs of the same LoRA (rank 8, the five star renders of ``modules.training.star_check``, 64 px, one torch
thread per process): one process with batch 1, one process with batch 2, and ``devices: "cpu:2"`` (two worker
processes of batch 1 each, launched as the ``train_lora`` job launches them). Reports the wall time of each
(the multi-process one with and without its launch: fork server, workers, model loads), the training seconds a
step, and the largest difference between the 2-process adapter and the 1-process batch-2 one (they should
match up to float summation order). Prints JSON.

    .venv/bin/python -m bench.train_multiprocess [--steps 40]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    import torch

    from modules.jobs.progress import JobControl
    from modules.models.types import LoadOptions
    from modules.training.distributed import Launch, WorkerSpec, run_lora
    from modules.training.lora.dataset import load_dataset
    from modules.training.lora.request import TrainLoraRequest
    from modules.training.lora.session import Session
    from modules.training.lora.trainer import adapter_state, train
    from modules.training.star_check import CHECKPOINT, load, make_dataset

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="train-mp-"))
    data = make_dataset(work / "star")
    cache = Path(__file__).resolve().parent.parent / "cache"
    base = dict(dataset=str(data), steps=args.steps, rank=8, alpha=8.0, learning_rate=1e-3, checkpoint_every=10_000,
                seed=0)
    out: dict[str, object] = {"steps": args.steps}
    adapters = {}
    for name, batch in (("one_process_batch1", 1), ("one_process_batch2", 2)):
        model, _ = load(cache)
        req = TrainLoraRequest(name=name, batch_size=batch, **base)
        images = load_dataset(data, [work], 64, req.instance_prompt)
        started = time.perf_counter()
        outcome = train(req, model, images, Session.in_folder(work / name, req), JobControl())
        out[name] = {"wall_s": round(time.perf_counter() - started, 2),
                     "s_per_step": round(outcome.seconds / args.steps, 3)}
        adapters[name] = adapter_state(model.pipeline.unet)
    req = TrainLoraRequest(name="two", batch_size=1, devices="cpu:2", **base)
    spec = WorkerSpec(req=req, checkpoint=CHECKPOINT, load_options=LoadOptions(cache_dir=cache), dataset=data,
                      roots=(work,), size=64, session_folder=work / "two", output=work / "two.safetensors", threads=1)
    for attempt in ("first_launch", "second_launch"):  # the second finds the fork server warm
        folder = work / attempt
        spec = WorkerSpec(**{**spec.__dict__, "session_folder": folder, "output": folder / "two.safetensors"})
        started = time.perf_counter()
        result = run_lora(spec, Launch(2, "cpu"), JobControl())
        out[f"two_processes_batch1_{attempt}"] = {"wall_s": round(time.perf_counter() - started, 2),
                                                  "train_s": result["seconds"],
                                                  "s_per_step": round(result["seconds"] / args.steps, 3)}
    state = torch.load(folder / "state.pt", weights_only=True)["adapter"]
    expected = adapters["one_process_batch2"]
    out["max_abs_diff_vs_one_process_batch2"] = max(float((state[k] - expected[k]).abs().max()) for k in state)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
