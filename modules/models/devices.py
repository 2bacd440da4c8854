"""Which device and precision models run on, from the flags: an NVIDIA (CUDA) or AMD (ROCm) GPU, an Apple GPU
(MPS) or an Intel GPU (XPU) with float16 when present, else the CPU with float32 (``--use-cpu``: the CPU;
``--no-half``: float32 everywhere). :func:`device_line` says which, for the page and the API."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modules.flags import Flags


def _accelerator(torch: Any) -> str | None:
    """The torch device type of the first accelerator found: ``cuda`` (NVIDIA or ROCm), ``xpu``, ``mps``."""
    if torch.cuda.is_available():
        return "cuda"
    xpu = getattr(torch, "xpu", None)
    if xpu is not None and xpu.is_available():
        return "xpu"
    mps = getattr(getattr(torch, "backends", None), "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return None


def device_choice(flags: "Flags") -> tuple[str, str]:
    """(device, dtype) from the flags: an accelerator with float16 when present (float32 with --no-half), else
    CPU float32."""
    if flags.use_cpu:
        return "cpu", "float32"
    import torch  # imported lazily: not on the startup path unless a model loads

    device = _accelerator(torch)
    if device is None:
        return "cpu", "float32"
    return device, "float32" if flags.no_half else "float16"


def device_name(torch: Any, device: str) -> str:
    """A person's name for ``device``: ``CUDA (NVIDIA H100)``, ``ROCm (AMD ...)``, ``MPS (Apple GPU)``..."""
    if device == "cuda":
        kind = "ROCm" if getattr(torch.version, "hip", None) else "CUDA"
        return f"{kind} ({torch.cuda.get_device_name(0)})"
    if device == "xpu":
        return f"XPU ({torch.xpu.get_device_name(0)})"
    if device == "mps":
        return "MPS (Apple GPU)"
    return "CPU"


def device_line(flags: "Flags") -> str:
    """``"CUDA (NVIDIA H100), float16"``; says when the CPU is forced (--use-cpu) or half precision is off."""
    device, dtype = device_choice(flags)
    import torch

    why = " (--use-cpu)" if flags.use_cpu else ""
    half = " (--no-half)" if flags.no_half and device != "cpu" else ""
    return f"{device_name(torch, device)}{why}, {dtype}{half}"
