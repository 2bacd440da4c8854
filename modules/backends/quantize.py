"""Quantization of a model's denoiser (the UNet, or FLUX's transformer) through torchao, applied at load.

One engine, chosen by measurement (docs/benchmarks.md, "Quantization and torch.compile on the CPU"):
torchao is PyTorch's own quantization library, kept in step with each PyTorch release; on an SD 1.x-size
UNet it was faster and closer to full precision than optimum-quanto (which is in maintenance mode).

Modes (``unet_quantization`` setting):

* ``none``: the weights as loaded;
* ``int8_weights``: the linear layers' weights stored as int8 with a scale per output channel, computed in
  the model's dtype (``Int8WeightOnlyConfig``): about a quarter of those weights' memory;
* ``int8_dynamic``: int8 weights and int8 activations quantized on the fly (``Int8DynamicActivationInt8Weight
  Config``): the fastest on GPUs with int8 matrix units, the furthest from full precision.

The layers are replaced by torchao's own quantized tensors (``quantize_``), nothing is patched. Quantizing
an SD 1.x UNet takes a few seconds on a CPU, so it is done again at each load rather than cached on disk.
"""

from __future__ import annotations

from typing import Any

MODES: dict[str, str] = {
    "none": "none",
    "int8_weights": "int8 weights",
    "int8_dynamic": "int8 weights + activations",
}


class QuantizationError(ValueError):
    """A quantization that cannot be applied here (unknown mode, engine missing, device without kernels)."""


def denoiser_of(pipe: Any) -> tuple[str, Any]:
    """(attribute name, module) of a pipeline's denoiser: ``unet`` or ``transformer``."""
    for name in ("unet", "transformer"):
        module = getattr(pipe, name, None)
        if module is not None:
            return name, module
    raise QuantizationError("this pipeline has no UNet or transformer to quantize")


def _config(mode: str) -> Any:
    try:
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig
    except ImportError as exc:
        raise QuantizationError("UNet quantization needs the 'torchao' package (pip install torchao)") from exc
    return Int8WeightOnlyConfig() if mode == "int8_weights" else Int8DynamicActivationInt8WeightConfig()


def quantize_module(module: Any, mode: str) -> None:
    """Quantize ``module``'s linear layers in place (``mode`` from :data:`MODES`; ``none`` does nothing)."""
    if mode not in MODES:
        raise QuantizationError(f"unknown quantization {mode!r}; one of: {', '.join(MODES)}")
    if mode == "none":
        return
    config = _config(mode)
    from torchao.quantization import quantize_

    try:
        quantize_(module, config)
    except (RuntimeError, NotImplementedError, TypeError) as exc:
        device = next((str(p.device) for p in module.parameters()), "?")
        raise QuantizationError(f"{MODES[mode]} quantization is not available on {device} here "
                                f"({type(exc).__name__}: {str(exc)[:200]})") from exc


def weight_bytes(module: Any) -> int:
    """Bytes held by ``module``'s parameters and buffers, quantized tensors counted by what they store."""
    def size(tensor: Any) -> int:
        flatten = getattr(type(tensor), "__tensor_flatten__", None)
        if flatten is not None and type(tensor).__name__ not in ("Tensor", "Parameter"):
            names, _ = tensor.__tensor_flatten__()
            return sum(size(getattr(tensor, name)) for name in names)
        return tensor.numel() * tensor.element_size()

    return sum(size(t) for t in module.state_dict(keep_vars=True).values())
