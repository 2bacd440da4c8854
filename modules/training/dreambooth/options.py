"""How a DreamBooth run computes: the optimizer (AdamW, or bitsandbytes' 8-bit AdamW) and mixed precision.

Both are checked before anything is loaded and refused with a message rather than quietly replaced: 8-bit
Adam needs bitsandbytes and a CUDA device; ``bf16`` needs a device that computes bf16 natively (``auto``
takes bf16 there and fp32 elsewhere, and the result says which ran). Trainable weights stay fp32 either
way (autocast only lowers the matmuls and convolutions), the fix for "Attempting to unscale FP16 gradients".
"""

from __future__ import annotations

import contextlib
import importlib.util
from typing import Any, Iterable

from modules.training.lora.errors import TrainingError

#: diffusers' DreamBooth defaults (``--adam_*``)
ADAM = {"betas": (0.9, 0.999), "weight_decay": 1e-2, "eps": 1e-8}


def check_8bit_adam(device: str) -> None:
    """Refuse 8-bit Adam where it cannot run (message for the user)."""
    if device != "cuda":
        raise TrainingError("8-bit Adam (bitsandbytes) runs on a CUDA GPU only; this studio trains on the "
                            f"{device.upper()}: turn use_8bit_adam off")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise TrainingError("8-bit Adam needs the bitsandbytes package (pip install bitsandbytes), which is not "
                            "installed: install it or turn use_8bit_adam off")


def native_bf16(device: str) -> bool:
    """Whether ``device`` ("cpu" or "cuda") computes bfloat16 natively."""
    import torch

    if device == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    from modules.training.precision import cpu_has_native_bf16

    return cpu_has_native_bf16()


def resolve_precision(mode: str, device: str) -> str:
    """"bf16" or "fp32" for the request's ``mixed_precision`` on ``device``; refuses bf16 where it is emulated."""
    if mode == "no":
        return "fp32"
    native = native_bf16(device)
    if mode == "bf16" and not native:
        raise TrainingError(f"this {device.upper()} has no native bf16 (it would be emulated, slower than fp32): "
                            "set mixed_precision to auto or no")
    return "bf16" if native else "fp32"


def autocast(precision: str, device: str) -> contextlib.AbstractContextManager[Any]:
    import torch

    if precision == "bf16":
        return torch.autocast(device, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def make_optimizer(groups: Iterable[dict[str, Any]], *, eight_bit: bool, device: str) -> Any:
    """AdamW over the parameter groups (fused on the CPU and CUDA), or bitsandbytes' AdamW8bit."""
    import torch

    groups = list(groups)
    if eight_bit:
        check_8bit_adam(device)
        import bitsandbytes  # type: ignore[import-not-found]

        return bitsandbytes.optim.AdamW8bit(groups, **ADAM)
    return torch.optim.AdamW(groups, fused=True, **ADAM)
