"""UNet backends on the CPU, side by side in one run: an SD 1.x-size UNet with random weights at 256x256
(latent 32x32, batch 2 as with CFG), per-step time on PyTorch fp32, ONNX Runtime and OpenVINO (f32, bf16),
each output against PyTorch, and the process's resident memory after each backend is ready.

    python -m bench.backends [--steps 5] [--small]

``--small`` uses a reduced UNet (for a quick look); the figures written are the full-size ones.
Writes the "UNet backends on the CPU (issue 29)" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import psutil
import torch


def _unet(small: bool):  # noqa: ANN202
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    if small:
        return UNet2DConditionModel(block_out_channels=(64, 128), layers_per_block=1, cross_attention_dim=768,
                                    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), attention_head_dim=8).eval()
    return UNet2DConditionModel(cross_attention_dim=768, attention_head_dim=8).eval()  # SD 1.x's shape


def _time(call, inputs, steps: int) -> tuple[float, torch.Tensor]:
    out = call(*inputs)  # warm-up
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        out = call(*inputs)
        times.append(time.perf_counter() - started)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--small", action="store_true")
    args = parser.parse_args()

    from modules.backends.export import exported_unet
    from modules.backends.runtime_unet import RuntimeUNet, onnxruntime_runner, openvino_runner

    proc = psutil.Process()
    unet = _unet(args.small)
    params = sum(p.numel() for p in unet.parameters())
    gen = torch.Generator().manual_seed(1)
    inputs = (torch.randn(2, 4, 32, 32, generator=gen), torch.tensor([500.0, 500.0]),
              torch.randn(2, 77, 768, generator=gen))
    rows = []
    with torch.no_grad():
        torch_time, reference = _time(lambda x, t, e: unet(x, t, encoder_hidden_states=e).sample, inputs, args.steps)
    rows.append(("PyTorch fp32", torch_time, 0.0, proc.memory_info().rss))
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        path = exported_unet(unet, Path(scratch))
        export_seconds = time.perf_counter() - started
        for label, runner in (("ONNX Runtime f32", lambda: onnxruntime_runner(path)),
                              ("OpenVINO f32", lambda: openvino_runner(path, "f32")),
                              ("OpenVINO bf16", lambda: openvino_runner(path, "bf16"))):
            try:
                runtime = RuntimeUNet(unet.config, runner(), label)
            except Exception as exc:  # noqa: BLE001 - a backend that cannot run here is reported
                rows.append((f"{label} (not run: {type(exc).__name__})", float("nan"), float("nan"), 0))
                continue
            seconds, out = _time(lambda x, t, e: runtime(x, t, encoder_hidden_states=e).sample, inputs, args.steps)
            relative = float((out - reference).abs().max() / reference.abs().max())
            rows.append((label, seconds, relative, proc.memory_info().rss))
            del runtime
    size = "reduced" if args.small else "SD 1.x-size"
    lines = [f"{size} UNet ({params / 1e6:.0f} M parameters, random weights), 256x256 (latent 2x4x32x32), median of "
             f"{args.steps} calls after one warm-up; export to ONNX took {export_seconds:.0f} s (once per model). "
             "Relative difference: largest |backend - PyTorch| over the largest |PyTorch| output.", "",
             "| backend | s per UNet call | speed vs PyTorch | relative difference | process RSS after |",
             "| --- | --- | --- | --- | --- |"]
    for label, seconds, relative, rss in rows:
        speed = f"{torch_time / seconds:.2f}x" if seconds == seconds else "n/a"
        lines.append(f"| {label} | {seconds:.3f} | {speed} | {relative:.1e} | {rss / 2**30:.1f} GiB |")
    from bench.report import machine_line, write_section

    lines += ["", machine_line(),
              "Goals of issue 29: ONNX Runtime and OpenVINO f32 >= 1.8x, OpenVINO bf16 >= 3x, f32 within 1e-3. "
              "Memory is the whole process's (PyTorch's weights stay loaded beside each runtime)."]
    print("\n".join(lines))
    if not args.small:
        write_section("UNet backends on the CPU (issue 29)", "\n".join(lines))


if __name__ == "__main__":
    main()
