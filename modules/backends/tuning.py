"""What is done to a model's denoiser at load on the PyTorch backend: quantization and ``torch.compile``.

The settings ``unet_quantization``, ``torch_compile`` and ``torch_compile_mode`` make a :class:`Tuning`; the
model manager applies it when it loads a checkpoint whose backend is PyTorch and loads the checkpoint again
when the settings change (a quantized UNet cannot be turned back). An exported graph (ONNX Runtime,
OpenVINO) has its full-precision weights fixed at export: a job on such a backend while quantization or
compile is set is refused with a message saying what to change, never run as if the setting were not there.
Token merging is applied per job, not at load: :mod:`modules.backends.token_merging`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modules.backends.choice import backend_for
from modules.backends.registry import Backend, BackendError


@dataclass(frozen=True)
class Tuning:
    quantization: str = "none"
    compile_mode: str | None = None   # None: not compiled

    @property
    def active(self) -> bool:
        return self.quantization != "none" or self.compile_mode is not None

    def describe(self) -> str:
        """``"UNet int8 weights, torch.compile default"``; empty when nothing is done."""
        from modules.backends.quantize import MODES

        parts = [MODES[self.quantization]] if self.quantization != "none" else []
        if self.compile_mode is not None:
            parts.append(f"torch.compile {self.compile_mode}")
        return f"denoiser {', '.join(parts)}" if parts else ""

    def apply(self, pipeline: Any) -> None:
        """Quantize, then compile, the pipeline's UNet or transformer in place (raises QuantizationError)."""
        if not self.active:
            return
        from modules.backends.compile import compile_module
        from modules.backends.quantize import denoiser_of, quantize_module

        _, denoiser = denoiser_of(pipeline)
        quantize_module(denoiser, self.quantization)
        if self.compile_mode is not None:
            compile_module(denoiser, self.compile_mode)


def wanted(settings: Any) -> Tuning:
    """The tuning the settings ask for (whatever the backend)."""
    return Tuning(quantization=getattr(settings, "unet_quantization", "none"),
                  compile_mode=getattr(settings, "torch_compile_mode", "default")
                  if getattr(settings, "torch_compile", False) else None)


def tuning_for(ctx: Any, model_name: str | None) -> Tuning:
    """What to apply at load to the checkpoint ``model_name``: the settings' tuning on PyTorch, none elsewhere."""
    backend, _ = backend_for(ctx, model_name)
    return wanted(ctx.settings.current) if backend == "torch" else Tuning()


def check_tuning(backend: Backend, settings: Any) -> None:
    """Refuse a job on an exported-graph backend while quantization or compile is set."""
    tuning = wanted(settings)
    if backend.name == "torch" or not tuning.active:
        return
    asked = " and ".join(filter(None, (
        f"UNet quantization ({tuning.quantization})" if tuning.quantization != "none" else "",
        "torch.compile" if tuning.compile_mode is not None else "")))
    raise BackendError(f"{asked} runs on the PyTorch backend only (the {backend.label} graph is exported from the "
                       "full-precision weights): set this model's backend to PyTorch, or set "
                       f"{'unet_quantization to none' if tuning.quantization != 'none' else 'torch_compile off'} "
                       "in Settings > Optimizations")
