"""``torch.compile`` of a model's denoiser, applied at load on the PyTorch backend (``torch_compile`` setting).

The module is compiled in place (``nn.Module.compile``): the pipeline keeps its own UNet object, hooks and
LoRA merges still reach it (a changed weight makes the next call compile again). Compilation happens on the
first denoising call, which is therefore slow (minutes for an SD 1.x UNet on a CPU; see docs/benchmarks.md).
Modes are PyTorch's: ``default``, ``reduce-overhead`` (CUDA graphs), ``max-autotune``,
``max-autotune-no-cudagraphs``.
"""

from __future__ import annotations

from typing import Any

MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


class CompileError(ValueError):
    """A compile request that cannot be honoured (unknown mode)."""


def compile_module(module: Any, mode: str) -> None:
    """Compile ``module``'s forward in place with inductor in ``mode``."""
    if mode not in MODES:
        raise CompileError(f"unknown torch.compile mode {mode!r}; one of: {', '.join(MODES)}")
    module.compile(mode=mode)


def is_compiled(module: Any) -> bool:
    return getattr(module, "_compiled_call_impl", None) is not None
