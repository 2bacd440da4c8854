"""Memory modes: how a pipeline keeps its weights and activations while a job runs.

Modes (``memory_mode`` setting; ``--medvram`` means ``model_offload``, ``--lowvram`` ``sequential_offload``):

* ``none``: everything stays on the device;
* ``model_offload``: each model (text encoder, UNet, VAE) moves to the GPU only while it runs (diffusers'
  ``enable_model_cpu_offload``): about the UNet's size on the GPU;
* ``sequential_offload``: layer by layer (``enable_sequential_cpu_offload``): the least GPU memory, slowest;
* ``auto``: by free GPU memory when the job starts (none when the model fits twice over, model offload when
  it fits once, else sequential).

Offloading moves weights between host and accelerator: on a CPU-only device there is nothing to offload, so
the mode in force there is ``none`` (said in the job's notes). VAE slicing and tiling and attention slicing
(``vae_slicing``, ``vae_tiling``, ``attention_slicing`` settings) work everywhere: tiling lets a large image
decode in pieces. The peak memory of a job (GPU allocator, or the process's resident memory on a CPU) is
measured around it (:class:`PeakMemory`).
"""

from __future__ import annotations

import contextlib
import resource
import sys
from dataclasses import dataclass, field
from typing import Any, Iterator

MODES = ("none", "model_offload", "sequential_offload", "auto")


def mode_from(flags: Any, settings: Any) -> str:
    if getattr(flags, "lowvram", False):
        return "sequential_offload"
    if getattr(flags, "medvram", False):
        return "model_offload"
    return getattr(settings, "memory_mode", "none")


def resolve_mode(mode: str, device: str, model_bytes: int, free_bytes: int | None) -> tuple[str, str | None]:
    """(the mode in force, a note when it differs from the one asked for)."""
    if mode not in MODES:
        raise ValueError(f"unknown memory mode {mode!r}; one of: {', '.join(MODES)}")
    if not device.startswith("cuda"):
        return "none", (None if mode in ("none", "auto") else
                        f"memory mode {mode} needs a GPU (weights are offloaded to the host); none on {device}")
    if mode != "auto":
        return mode, None
    if free_bytes is None or free_bytes >= 2 * model_bytes:
        return "none", None
    return ("model_offload" if free_bytes >= model_bytes else "sequential_offload"), None


@dataclass
class MemoryPlan:
    mode: str
    vae_slicing: bool = False
    vae_tiling: bool = False
    attention_slicing: bool = False
    notes: list[str] = field(default_factory=list)
    device: str = "cpu"

    def describe(self) -> str:
        extras = [name for name, on in (("VAE slicing", self.vae_slicing), ("VAE tiling", self.vae_tiling),
                                        ("attention slicing", self.attention_slicing)) if on]
        return self.mode.replace("_", " ") + (f" + {', '.join(extras)}" if extras else "")


def apply_plan(pipe: Any, plan: MemoryPlan, device: str) -> None:
    """Set the pipeline's switches for ``plan`` (each idempotent: run before every job)."""
    vae = getattr(pipe, "vae", None)
    if vae is not None:
        (vae.enable_slicing if plan.vae_slicing else vae.disable_slicing)()
        (vae.enable_tiling if plan.vae_tiling else vae.disable_tiling)()
    if hasattr(pipe, "enable_attention_slicing"):
        if plan.attention_slicing:
            pipe.enable_attention_slicing()
        else:
            pipe.disable_attention_slicing()
    if plan.mode == "model_offload" and not getattr(pipe, "_atelier_offload", None) == plan.mode:
        pipe.enable_model_cpu_offload(device=device)
        pipe._atelier_offload = plan.mode  # noqa: SLF001 - remembered on the pipeline it was set on
    elif plan.mode == "sequential_offload" and not getattr(pipe, "_atelier_offload", None) == plan.mode:
        pipe.enable_sequential_cpu_offload(device=device)
        pipe._atelier_offload = plan.mode  # noqa: SLF001


class PeakMemory:
    """The peak memory of what runs inside :meth:`measure`, in MiB (GPU allocator or process RSS)."""

    def __init__(self) -> None:
        self.peak_mb: float | None = None
        self.kind = ""

    @contextlib.contextmanager
    def measure(self, device: str) -> Iterator["PeakMemory"]:
        cuda = None
        if device.startswith("cuda"):
            from modules.lazy_imports import loaded_module

            torch = loaded_module("torch")
            cuda = torch.cuda if torch is not None and torch.cuda.is_available() else None
        if cuda is not None:
            cuda.reset_peak_memory_stats()
        try:
            yield self
        finally:
            if cuda is not None:
                self.peak_mb, self.kind = cuda.max_memory_allocated() / 2**20, "GPU"
            else:  # the process's high-water mark so far (Linux reports KiB, macOS bytes)
                rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                self.peak_mb, self.kind = rss / (2**20 if sys.platform == "darwin" else 2**10), "RAM (process peak)"
