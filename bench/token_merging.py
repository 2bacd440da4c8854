"""Token merging (ToMe) on the CPU, side by side in one run: an SD 1.x-size UNet with random weights at 512x512
(latent 64x64), per-call time at ratios 0 / 0.3 / 0.5 (the fastest of ``--steps`` calls) and each output's difference from ratio 0.

    python -m bench.token_merging [--steps 4] [--batch 1] [--ratios 0,0.3,0.5] [--small] [--size 512]

The studio's own path (modules/backends/token_merging.py: the attn1 processors wrapped, the UNet's processors
put back after each ratio). One UNet; the calls are interleaved (0, 0.3, 0.5, 0, 0.3, ...) after one warm-up
call, so a change of the machine's load hits every ratio alike. Writes the "Token merging (issue 29)" section
of docs/benchmarks.md (``--small``: a reduced UNet, for a quick look; not written).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from bench.backends import _unet


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=4, help="timed calls per ratio, after one warm-up call")
    parser.add_argument("--batch", type=int, default=1, help="1: one image without CFG; 2: one image with CFG")
    parser.add_argument("--ratios", default="0,0.3,0.5")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--layer-calls", type=int, default=15, help="calls per ratio of the one-layer measurement")
    args = parser.parse_args()

    from modules.backends.token_merging import token_merging

    ratios = [float(r) for r in args.ratios.split(",")]
    if ratios[0] != 0.0:
        ratios.insert(0, 0.0)
    unet = _unet(args.small)
    params = sum(p.numel() for p in unet.parameters())
    side = args.size // 8
    gen = torch.Generator().manual_seed(1)
    inputs = (torch.randn(args.batch, 4, side, side, generator=gen), torch.tensor([500.0] * args.batch),
              torch.randn(args.batch, 77, 768, generator=gen))

    def call(ratio: float) -> tuple[float, torch.Tensor, int]:
        with torch.no_grad(), token_merging(unet, ratio) as state:
            started = time.perf_counter()
            out = unet(inputs[0], inputs[1], encoder_hidden_states=inputs[2]).sample
            seconds = time.perf_counter() - started
        attended = state.tokens_attended / max(state.tokens_in, 1) if state is not None else 1.0
        return seconds, out, attended

    started = time.perf_counter()
    call(0.0)  # warm-up
    print(f"warm-up {time.perf_counter() - started:.1f} s", flush=True)
    times: dict[float, list[float]] = {r: [] for r in ratios}
    outs: dict[float, torch.Tensor] = {}
    seen: dict[float, float] = {}
    for _ in range(args.steps):
        for ratio in ratios:
            seconds, outs[ratio], seen[ratio] = call(ratio)
            times[ratio].append(seconds)
            print(f"ratio {ratio:g}: {seconds:.2f} s", flush=True)
    reference = outs[0.0]
    rows = []
    for ratio in ratios:
        fastest, base = min(times[ratio]), min(times[0.0])
        relative = float((outs[ratio] - reference).norm() / reference.norm())
        rows.append((ratio, fastest, base / fastest, statistics.median(times[0.0]) / statistics.median(times[ratio]),
                     seen[ratio], relative))
    layer = _layer_rows(ratios, side, args.batch, args.layer_calls)
    _write(rows, layer, args, params, side)


def _layer_rows(ratios: list[float], side: int, batch: int, calls: int) -> list[tuple[float, float, float]]:
    """One SD 1.x full-resolution self-attention layer (320 channels, 8 heads) through the studio's processor:
    (ratio, fastest ms, speed vs 0), short calls interleaved: far less disturbed by the machine's load."""
    from diffusers.models.attention_processor import Attention

    from modules.backends.token_merging import MergeState, MergingProcessor

    torch.manual_seed(0)
    attn = Attention(320, heads=8, dim_head=40).eval()
    inner = attn.processor
    x = torch.randn(batch, side * side, 320)
    times: dict[float, list[float]] = {r: [] for r in ratios}
    with torch.no_grad():
        attn(x)  # warm-up
        for _ in range(calls):
            for ratio in ratios:
                state = MergeState(ratio, latent_hw=(side, side), generator=torch.Generator().manual_seed(0))
                attn.set_processor(MergingProcessor(inner, state) if ratio else inner)
                started = time.perf_counter()
                attn(x)
                times[ratio].append(time.perf_counter() - started)
    base = min(times[0.0])
    return [(r, min(times[r]) * 1000, base / min(times[r])) for r in ratios]


def _write(rows: list[tuple], layer: list[tuple], args: argparse.Namespace, params: int, side: int) -> None:
    size = "reduced" if args.small else "SD 1.x-size"
    lines = [f"{size} UNet ({params / 1e6:.0f} M parameters, random weights), {args.size}x{args.size} (latent "
             f"{args.batch}x4x{side}x{side}, batch {args.batch}), {args.steps} call(s) per ratio after one warm-up "
             "call, the ratios interleaved in one run on one UNet; time: the fastest call of each ratio (the "
             "least disturbed by other work on the machine), speed also by the medians. Tokens attended: the share of the "
             "full-resolution self-attention layers' tokens their attention saw. Difference: |out - out at 0| over "
             "|out at 0| (Frobenius norms), one UNet call.", "",
             "| token_merging_ratio | s per UNet call (fastest) | speed vs ratio 0 | by medians | tokens attended | "
             "difference from ratio 0 |",
             "| --- | --- | --- | --- | --- | --- |"]
    for ratio, seconds, speed, by_median, seen, relative in rows:
        lines.append(f"| {ratio:g} | {seconds:.2f} | {speed:.2f}x | {by_median:.2f}x | {seen:.0%} | {relative:.1e} |")
    lines += ["", f"One full-resolution self-attention layer alone ({side * side} tokens, 320 channels, 8 heads; SD 1.x has "
              f"five such layers), the fastest of {args.layer_calls} interleaved calls per ratio, merge and unmerge "
              "included:", "", "| token_merging_ratio | ms per layer call | speed vs ratio 0 |", "| --- | --- | --- |"]
    lines += [f"| {ratio:g} | {ms:.0f} | {speed:.2f}x |" for ratio, ms, speed in layer]
    from bench.report import machine_line, write_section

    load = os.getloadavg()[0]
    lines += ["", f"{machine_line()} 1-minute load average at the end: {load:.1f}.",
              "The machine is shared by several sessions on two cores: single timings are noisy; read the ratios "
              "measured side by side in this run.", "",
              "Only the self-attention at the latent's full resolution is merged (ToMe for SD's default), so the "
              "saving grows with the image: at 512x512 those layers attend over 4096 tokens, quadratic in the count. "
              "When the fastest-call and median speeds of the whole UNet disagree, the machine's load decided those rows; "
              "the one-layer table (short calls, many of them) is the steadier figure. "
              "Random weights make the difference an upper-bound-ish figure: a trained UNet's neighbouring tokens "
              "are far more alike than random ones, which is what merging relies on."]
    print("\n".join(lines))
    if not args.small:
        write_section("Token merging (issue 29)", "\n".join(lines))


if __name__ == "__main__":
    main()
