"""Mixed precision for training on the CPU: bfloat16 autocast where the CPU computes bf16 natively.

On CPUs with AMX or AVX-512 BF16 (recent Xeons, Zen 4), oneDNN runs bf16 convolutions well under the fp32 time:
the embedded VAE's training step measured 0.47-0.48 s against 0.80 s (one thread, side by side, see
docs/benchmarks.md). Elsewhere bf16 is emulated and slower than fp32, so autocast stays off there. Weights,
optimizer state and the saved model stay fp32 (autocast only lowers the matmuls and convolutions).
"""

from __future__ import annotations

import contextlib
import functools

import torch


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True when this CPU has AMX tiles or AVX-512 BF16 instructions (torch's own CPU capability checks)."""
    checks = (getattr(torch.cpu, "_is_amx_tile_supported", None), getattr(torch.cpu, "_is_avx512_bf16_supported", None))
    return any(check is not None and check() for check in checks)


def cpu_bf16_autocast(requested: bool) -> contextlib.AbstractContextManager[object]:
    """`torch.autocast("cpu", bfloat16)` if `requested` and the CPU computes bf16 natively, else a no-op context."""
    if requested and cpu_has_native_bf16():
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def describe_cpu_bf16(requested: bool) -> str:
    """What `cpu_bf16_autocast(requested)` will do on this machine, for the training log."""
    if not requested:
        return "fp32 (bf16 autocast not requested)"
    return "bf16 autocast (native bf16 on this CPU)" if cpu_has_native_bf16() else "fp32 (this CPU has no native bf16)"
