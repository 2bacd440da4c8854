"""Time from launch to a usable page: ``python launch.py`` in a fresh data dir, then Chromium (started
beforehand, a fresh browser context per round: nothing cached) opens the page.

Per round:

* **HTTP up**: the first ``200`` for ``GET /``;
* **usable page**: the page is rendered in the browser, the Generate button is visible and the
  checkpoint list and model status have arrived (the page's load event has run); the goal is ≤ 10 s;
* **model ready**: the status next to the checkpoint picker says the default model is loaded (the
  embedded ``atelier-shapes-v1`` when it exists; it loads in the background after start-up).

    .venv/bin/python -m bench.ui_startup [--rounds 3] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.report import machine_line, write_section
from tests.helpers.server import free_port

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("ATELIER_CHROMIUM", "/usr/bin/chromium")
EMBEDDED = REPO / "models" / "Stable-diffusion" / "atelier-shapes-v1.safetensors"
GOAL_S = 10.0


def one_round(browser, timeout: float = 120.0) -> dict[str, float | None]:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "launch.py", "--data-dir", tmp, "--port", str(port)], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            http_up = None
            while http_up is None:
                if time.perf_counter() - started > timeout or proc.poll() is not None:
                    raise RuntimeError("the studio did not come up")
                try:
                    if httpx.get(url, timeout=2).status_code == 200:
                        http_up = time.perf_counter() - started
                except httpx.HTTPError:
                    time.sleep(0.05)
            page.goto(url)
            page.wait_for_selector("#txt2img_generate", state="visible", timeout=timeout * 1000)
            page.wait_for_selector("#model_status .atelier-status", timeout=timeout * 1000)  # load event done
            usable = time.perf_counter() - started
            model = None
            if EMBEDDED.is_file():
                page.wait_for_function("() => /loaded in/.test(document.querySelector('#model_status').innerText)",
                                       timeout=timeout * 1000)
                model = time.perf_counter() - started
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
            context.close()
    return {"http": http_up, "usable": usable, "model": model}


def _fmt(values: list[float | None]) -> str:
    got = [v for v in values if v is not None]
    if not got:
        return "n/a"
    return f"{statistics.median(got):.1f} s / {max(got):.1f} s"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            rounds = []
            for i in range(args.rounds):
                rounds.append(one_round(browser))
                print(f"round {i + 1}: " + ", ".join(f"{k} {v:.2f} s" for k, v in rounds[-1].items() if v),
                      flush=True)
        finally:
            browser.close()
    usable = [r["usable"] for r in rounds]
    worst = max(usable)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    model_line = (f"| default model loaded (`{EMBEDDED.name}`, in the background) | {_fmt([r['model'] for r in rounds])} "
                  "| |" if EMBEDDED.is_file() else "| default model loaded | no embedded model in this checkout | |")
    body = f"""{machine_line()}

`bench/ui_startup.py`: `python launch.py` (default flags) in a fresh data dir, {args.rounds} rounds; headless
Chromium, started beforehand, opens the page with an empty cache. "Usable" means the page is rendered,
Generate is visible and the page's load event (checkpoint list, model status) has run. Load average
{load:.1f} at the end (other work shares the machine).

| from launch to | median / worst | goal |
| --- | --- | --- |
| HTTP 200 on `/` | {_fmt([r['http'] for r in rounds])} | |
| **usable page in the browser** | **{_fmt(usable)}** | ≤ {GOAL_S:.0f} s |
{model_line}

Result: {'goal met' if worst <= GOAL_S else 'goal NOT met'} (worst round {worst:.1f} s).
"""
    print(body)
    if not args.no_write:
        print(f"wrote {write_section('Web UI start-up (issue 5)', body)}")


if __name__ == "__main__":
    main()
