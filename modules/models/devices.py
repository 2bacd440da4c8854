"""Which device and precision models run on, from the flags (CUDA with float16 when present, else CPU float32)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modules.flags import Flags


def device_choice(flags: "Flags") -> tuple[str, str]:
    """(device, dtype) from the flags: CUDA with float16 when present, else CPU float32."""
    if flags.use_cpu:
        return "cpu", "float32"
    import torch  # imported lazily: not on the startup path unless a model loads

    if torch.cuda.is_available():
        return "cuda", "float32" if flags.no_half else "float16"
    return "cpu", "float32"
