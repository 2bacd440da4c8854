"""API under load: 8 clients x 16 txt2img requests against one server, with ``/progress`` polled.

The server runs as its own process (``launch.py --nowebui``, as users run it) with a tiny SD 1.x
model (real architecture, random weights). The same requests are sent one by one and by 8
concurrent clients, in alternating rounds (so drift on a shared machine hits both sides equally);
all the while another thread polls ``GET /sdapi/v1/progress`` (as a UI would, live preview
included) and records its latency per phase. Goals (issue 6): every request succeeds, concurrent
throughput >= 0.9x one-by-one, ``/progress`` p99 <= 50 ms under load. Writes the figures to
docs/benchmarks.md.

    .venv/bin/python -m bench.api_load [--clients 8] [--requests 16] [--steps 8] [--size 64]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench.report import machine_line, write_section
from tests.fixtures.tiny_models import build_tiny_checkpoint
from tests.helpers.server import free_port

REPO = Path(__file__).resolve().parent.parent


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


class ProgressPoller(threading.Thread):
    """Polls /progress every ``interval`` seconds and records each answer's latency."""

    def __init__(self, base_url: str, interval: float = 0.025) -> None:
        super().__init__(daemon=True)
        self.base_url, self.interval = base_url, interval
        self.latencies: dict[str, list[float]] = {}
        self.phase = "idle"
        self.errors = 0
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=10) as http:
            while not self.stop.is_set():
                phase = self.phase
                t0 = time.perf_counter()
                r = http.get("/sdapi/v1/progress")
                self.latencies.setdefault(phase, []).append(time.perf_counter() - t0)
                if r.status_code != 200:
                    self.errors += 1
                self.stop.wait(self.interval)


def _say(text: str) -> None:
    print(f"[api_load] {text}", file=sys.stderr, flush=True)


def _send(http: httpx.Client, body: dict, seed: int) -> bool:
    r = http.post("/sdapi/v1/txt2img", json={**body, "seed": seed})
    return r.status_code == 200 and len(r.json()["images"]) == 1


def _one_by_one(base_url: str, body: dict, seeds: list[int]) -> tuple[float, int]:
    ok = 0
    with httpx.Client(base_url=base_url, timeout=600) as http:
        t0 = time.perf_counter()
        for seed in seeds:
            ok += _send(http, body, seed)
        return time.perf_counter() - t0, ok


def _concurrent(base_url: str, body: dict, clients: int, per_client: int) -> tuple[float, int]:
    results: list[bool] = []
    lock = threading.Lock()

    def client(index: int) -> None:
        with httpx.Client(base_url=base_url, timeout=600) as http:
            for n in range(per_client):
                ok = _send(http, body, 10_000 + index * per_client + n)
                with lock:
                    results.append(ok)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - t0, sum(results)


def _start_server(tmp: Path, port: int, threads: int) -> subprocess.Popen:
    ckpt_dir = tmp / "Stable-diffusion"
    ckpt_dir.mkdir()
    build_tiny_checkpoint("sd1", ckpt_dir, fmt="single", seed=0)
    log = (tmp / "server.log").open("wb")
    return subprocess.Popen([sys.executable, "launch.py", "--nowebui", "--data-dir", str(tmp / "data"),
                             "--ckpt-dir", str(ckpt_dir), "--port", str(port)], cwd=REPO, stdout=log,
                            stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(threads)})


def _wait_ready(base_url: str, body: dict, proc: subprocess.Popen) -> None:
    deadline = time.time() + 180
    with httpx.Client(base_url=base_url, timeout=600) as http:
        while time.time() < deadline:
            if proc.poll() is not None:
                raise SystemExit("the server exited during start-up")
            try:
                if http.get("/internal/ping").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        for seed in range(3):  # waits for the start-up model load, warms every path
            if not _send(http, body, seed):
                raise SystemExit("warm-up request failed")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=16, help="requests per client")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads of the server (OMP_NUM_THREADS); 1 avoids oversubscribing a shared 2-core box")
    args = ap.parse_args()
    total = args.clients * args.requests
    body = {"prompt": "a red circle on a blue background", "steps": args.steps, "width": args.size,
            "height": args.size, "sampler_name": "Euler", "cfg_scale": 7}
    with tempfile.TemporaryDirectory() as tmp_name:
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        proc = _start_server(Path(tmp_name), port, args.threads)
        try:
            _wait_ready(base_url, body, proc)
            _say("server ready")
            poller = ProgressPoller(base_url)
            poller.start()
            time.sleep(2.0)
            seq = conc = 0.0
            ok_seq = ok_conc = 0
            per_round = 2  # requests per client per round
            for round_no in range(args.requests // per_round):
                first = 100 + round_no * args.clients * per_round
                poller.phase = "one by one"
                elapsed, ok = _one_by_one(base_url, body, list(range(first, first + args.clients * per_round)))
                seq, ok_seq = seq + elapsed, ok_seq + ok
                poller.phase = "concurrent"
                elapsed, ok = _concurrent(base_url, body, args.clients, per_round)
                conc, ok_conc = conc + elapsed, ok_conc + ok
                _say(f"round {round_no + 1}: one by one {seq:.1f} s, concurrent {conc:.1f} s (cumulative)")
            poller.stop.set()
            poller.join()
        finally:
            proc.terminate()
            proc.wait(30)

    seq_rps, conc_rps = total / seq, total / conc
    ratio = conc_rps / seq_rps
    lat = [x * 1000 for x in poller.latencies["concurrent"]]
    seq_lat = [x * 1000 for x in poller.latencies["one by one"]]
    idle_lat = [x * 1000 for x in poller.latencies["idle"]]
    p99 = _percentile(lat, 99)
    all_ok = ok_seq == total and ok_conc == total and poller.errors == 0
    verdict = "all goals met" if all_ok and ratio >= 0.9 and p99 <= 50 else "GOAL MISSED"
    body_md = f"""{machine_line()}

`bench/api_load.py`: server process `launch.py --nowebui`, tiny SD 1.x model (real architecture, random
weights, server with {args.threads} torch thread(s)), `POST /sdapi/v1/txt2img` {args.size}×{args.size}, {args.steps} steps,
Euler. The same {total} requests sent one by one and by {args.clients} concurrent clients × {args.requests} requests, in
{args.requests // 2} alternating rounds; `GET /sdapi/v1/progress` (live preview included) polled every 25 ms from
another thread throughout.

| figure | value | goal |
| --- | --- | --- |
| requests succeeded (one by one / concurrent) | {ok_seq}/{total} / {ok_conc}/{total} | all |
| one by one | {seq:.1f} s, {seq_rps:.2f} req/s | |
| {args.clients} concurrent clients | {conc:.1f} s, {conc_rps:.2f} req/s | |
| **throughput ratio** (concurrent / one by one) | **{ratio:.3f}** | ≥ 0.9 |
| `/progress` under load: p50 / p95 / **p99** / max ({len(lat)} polls) | {statistics.median(lat):.1f} / {_percentile(lat, 95):.1f} / **{p99:.1f}** / {max(lat):.1f} ms | p99 ≤ 50 ms |
| `/progress` during one-by-one: p50 / p99 ({len(seq_lat)} polls) | {statistics.median(seq_lat):.1f} / {_percentile(seq_lat, 99):.1f} ms | |
| `/progress` idle: p50 / p99 ({len(idle_lat)} polls) | {statistics.median(idle_lat):.1f} / {_percentile(idle_lat, 99):.1f} ms | |

Result: {verdict}.
"""
    print(body_md)
    write_section("API load (issue 6)", body_md)
    if verdict != "all goals met":
        sys.exit(1)


if __name__ == "__main__":
    main()
