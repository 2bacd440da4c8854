"""Studio overhead: the API's txt2img against a direct diffusers pipeline call.

Same tiny SD 1.x model, same settings, interleaved in one run (these machines are noisy):
request i goes through HTTP → queue → runner → PNG/infotext → JSON, then the same settings go
straight to the same diffusers pipeline object. Writes the ratio and the added milliseconds per
request to docs/benchmarks.md.

    .venv/bin/python -m bench.overhead [--requests 20] [--steps 20] [--size 64]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import torch

from bench.report import machine_line, write_section
from tests.fixtures.tiny_models import build_tiny_checkpoint
from tests.helpers.server import load_and_wait, running_server


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for both paths")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt_dir = Path(tmp) / "Stable-diffusion"
        ckpt_dir.mkdir()
        ckpt = build_tiny_checkpoint("sd1", ckpt_dir, fmt="single", seed=0)
        with running_server(["--nowebui", "--data-dir", str(Path(tmp) / "data"), "--ckpt-dir", str(ckpt_dir),
                             "--skip-load-model-at-start"]) as srv:
            load_and_wait(srv.ctx, str(ckpt))
            pipe = srv.ctx.models.active.model.pipeline
            body = {"prompt": "a red circle on a blue background", "steps": args.steps, "width": args.size,
                    "height": args.size, "sampler_name": "Euler", "cfg_scale": 7, "seed": 1}
            api_times, direct_times = [], []
            with httpx.Client(base_url=srv.base_url, timeout=300) as http:
                for warm in range(2):  # warm both paths
                    http.post("/sdapi/v1/txt2img", json=body).raise_for_status()
                def via_api(i: int) -> None:
                    t0 = time.perf_counter()
                    http.post("/sdapi/v1/txt2img", json={**body, "seed": i}).raise_for_status()
                    api_times.append(time.perf_counter() - t0)

                def direct(i: int) -> None:
                    gen = torch.Generator("cpu").manual_seed(i)
                    t0 = time.perf_counter()
                    pipe(prompt=[body["prompt"]], negative_prompt=[""], num_inference_steps=args.steps,
                         height=args.size, width=args.size, guidance_scale=7.0, generator=[gen],
                         output_type="pil")
                    direct_times.append(time.perf_counter() - t0)

                for i in range(args.requests):  # alternate the order so drift hits both paths alike
                    first, second = (via_api, direct) if i % 2 == 0 else (direct, via_api)
                    first(i)
                    second(i)
    api_med, direct_med = statistics.median(api_times), statistics.median(direct_times)
    api_min, direct_min = min(api_times), min(direct_times)
    ratio = api_med / direct_med
    added_ms = (api_med - direct_med) * 1000
    body_md = f"""{machine_line()}

`bench/overhead.py`: tiny SD 1.x model (real architecture, random weights), {args.size}×{args.size},
{args.steps} steps, Euler, CFG 7; {args.requests} requests, API and direct diffusers call interleaved.

torch threads: {args.threads}; order alternated each round.

| path | median | fastest |
| --- | --- | --- |
| studio `POST /sdapi/v1/txt2img` (HTTP, queue, seeds, prompt parsing, infotext, PNG, base64) | {api_med * 1000:.0f} ms | {api_min * 1000:.0f} ms |
| direct `pipeline(...)` on the same pipeline object | {direct_med * 1000:.0f} ms | {direct_min * 1000:.0f} ms |
| **ratio** | **{ratio:.3f}** (goal ≤ 1.05) | {api_min / direct_min:.3f} |
| **added per request** | **{added_ms:.0f} ms** (goal ≤ 150 ms) | {(api_min - direct_min) * 1000:.0f} ms |
"""
    print(body_md)
    write_section("Studio overhead (issue 2)", body_md)


if __name__ == "__main__":
    main()
