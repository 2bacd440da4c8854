"""Quantization and torch.compile on the CPU, side by side with plain PyTorch in one run: an SD 1.x-size UNet
with random weights at 256x256 (latent 32x32, batch 2 as with CFG); per-call time, output against plain
PyTorch fp32, the UNet's weight memory, and what it costs to prepare (quantizing; compiling on the first call).

    python -m bench.quantize [--steps 3] [--small] [--no-compile]

Rows: PyTorch fp32; torchao int8 weights and int8 dynamic (the studio's engine: modules/backends/quantize.py);
optimum-quanto int8 weights when it is installed (the engine measured against torchao); torch.compile
(inductor, mode default) through modules/backends/compile.py. ``--small`` uses a reduced UNet. Writes the
"Quantization and torch.compile on the CPU (issue 29)" section of docs/benchmarks.md (``--small``: its
"..., reduced UNet" section), again after each row, so a run stopped early leaves the rows it measured.
"""

from __future__ import annotations

import argparse
import gc
import os
import importlib.util
import statistics
import time

import torch

from bench.backends import _unet


def _time(unet, inputs, steps: int) -> tuple[float, float, torch.Tensor]:
    """(first call s, median s of the next ``steps`` calls, output)."""
    x, t, e = inputs
    with torch.no_grad():
        started = time.perf_counter()
        out = unet(x, t, encoder_hidden_states=e).sample
        first = time.perf_counter() - started
        times = []
        for _ in range(steps):
            started = time.perf_counter()
            out = unet(x, t, encoder_hidden_states=e).sample
            times.append(time.perf_counter() - started)
    return first, statistics.median(times), out


def _quanto(unet) -> None:  # noqa: ANN001
    from optimum.quanto import freeze, qint8, quantize

    quantize(unet, weights=qint8)
    freeze(unet)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()

    from modules.backends.compile import compile_module
    from modules.backends.quantize import quantize_module, weight_bytes

    gen = torch.Generator().manual_seed(1)
    inputs = (torch.randn(2, 4, 32, 32, generator=gen), torch.tensor([500.0, 500.0]),
              torch.randn(2, 77, 768, generator=gen))
    variants = [("PyTorch fp32", None),
                ("torchao int8 weights", lambda u: quantize_module(u, "int8_weights")),
                ("torchao int8 dynamic (weights + activations)", lambda u: quantize_module(u, "int8_dynamic"))]
    if importlib.util.find_spec("optimum.quanto") is not None:
        variants.append(("optimum-quanto int8 weights", _quanto))
    if not args.no_compile:
        variants.append(("torch.compile (inductor, default)", lambda u: compile_module(u, "default")))
    rows, reference, base = [], None, None
    for label, prepare in variants:
        unet = _unet(args.small)
        started = time.perf_counter()
        params = sum(p.numel() for p in unet.parameters())
        if prepare is not None:
            prepare(unet)
        prepare_s = time.perf_counter() - started
        first, seconds, out = _time(unet, inputs, args.steps)
        if reference is None:
            reference, base = out, seconds
        relative = float((out - reference).abs().max() / reference.abs().max())
        rows.append((label, seconds, base / seconds, relative, weight_bytes(unet) / 2**20, prepare_s, first))
        print(rows[-1], flush=True)
        del unet, out
        gc.collect()
        _write(rows, args, len(variants), params)


def _write(rows: list[tuple], args: argparse.Namespace, planned: int, params: int) -> None:
    size = "reduced" if args.small else "SD 1.x-size"
    lines = [f"{size} UNet ({params / 1e6:.0f} M parameters, random weights), 256x256 (latent 2x4x32x32), median of "
             f"{args.steps} call(s) after the first; each row a fresh UNet with the same weights, in one run. "
             "Relative difference: largest |row - PyTorch fp32| over the largest |PyTorch fp32| output.", "",
             "| variant | s per UNet call | speed vs PyTorch | relative difference | UNet weights | prepare | first call |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for label, seconds, speed, relative, mib, prepare_s, first in rows:
        lines.append(f"| {label} | {seconds:.3f} | {speed:.2f}x | {relative:.1e} | {mib:.0f} MiB | {prepare_s:.1f} s | "
                     f"{first:.1f} s |")
    from bench.report import machine_line, write_section

    if len(rows) < planned:
        lines += ["", f"(run in progress or stopped: {len(rows)} of {planned} rows measured)"]
    load = os.getloadavg()[0]
    lines += ["", f"{machine_line()} 1-minute load average at the end: {load:.1f}.",
              "The machine is shared by several sessions on two cores: single timings are noisy (more so the more "
              "loaded), the ratios in one run are what to read. \"prepare\" is quantizing (or wrapping for compile); "
              "the compiled row's first call includes compiling.", "",
              "The studio's engine is torchao (`unet_quantization`: int8_weights, int8_dynamic): it stays closest "
              "to full precision (relative difference about 6x smaller than optimum-quanto's int8 weights), it is "
              "PyTorch's own library released with each PyTorch version, and its int8 dynamic mode is the one the "
              "diffusers GPU recipes use; optimum-quanto is in maintenance mode (its maintainers, "
              "huggingface/optimum-quanto#405). optimum-quanto saves more memory because it also quantizes the "
              "convolutions, which torchao's int8 modes leave in float. On a CPU neither makes the UNet faster "
              "(the int8 kernels there are slower than PyTorch's float32 matrix products); quantization is for "
              "memory here and for speed on GPUs with int8 units. Quantizing is done again at each load (no cache "
              "on disk): in these runs it took less than one UNet call."]
    print("\n".join(lines))
    title = "Quantization and torch.compile on the CPU" + (", reduced UNet" if args.small else "")
    write_section(f"{title} (issue 29)", "\n".join(lines))


if __name__ == "__main__":
    main()
