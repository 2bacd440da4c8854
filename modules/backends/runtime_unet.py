"""A UNet stand-in that runs the exported graph on ONNX Runtime or OpenVINO inside a diffusers pipeline.

It keeps the PyTorch UNet's ``config`` (pipelines read ``in_channels``, ``sample_size``...), reports a CPU
float32 device and dtype, accepts the UNet's call signature and returns its output type, so samplers,
callbacks and forward hooks work unchanged. What the graph cannot take (ControlNet residuals, extra
conditioning) is refused with a message, never dropped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from modules.backends.registry import BackendError

Runner = Callable[[dict[str, np.ndarray]], np.ndarray]


def onnxruntime_runner(path: Path, threads: int | None = None) -> Runner:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=_providers(ort))
    return lambda feed: session.run(None, feed)[0]


def _providers(ort: Any) -> list[str]:
    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "DmlExecutionProvider", "CPUExecutionProvider") if p in available]


def openvino_runner(path: Path, precision: str = "f32") -> Runner:
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(path)), "CPU", {"INFERENCE_PRECISION_HINT": precision})
    request = compiled.create_infer_request()
    output = compiled.output(0)

    def run(feed: dict[str, np.ndarray]) -> np.ndarray:
        return np.array(request.infer(feed)[output], copy=True)

    return run


class RuntimeUNet(torch.nn.Module):
    """Calls ``runner`` with numpy arrays in place of the PyTorch UNet (see the module docstring)."""

    def __init__(self, config: Any, runner: Runner, backend_label: str) -> None:
        super().__init__()
        self.config = config
        self._runner = runner
        self.backend_label = backend_label
        self._anchor = torch.nn.Parameter(torch.zeros(0), requires_grad=False)  # .device/.dtype for pipelines

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    def forward(self, sample: torch.Tensor, timestep: Any, encoder_hidden_states: torch.Tensor, *args: Any,
                return_dict: bool = True, **kwargs: Any) -> Any:
        from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

        unsupported = [name for name in ("down_block_additional_residuals", "mid_block_additional_residual",
                                         "down_intrablock_additional_residuals", "added_cond_kwargs",
                                         "timestep_cond") if kwargs.get(name) is not None]
        if args or unsupported:
            raise BackendError(f"the {self.backend_label} backend cannot take {', '.join(unsupported) or 'extra inputs'} "
                               "(ControlNet, T2I adapters, SDXL conditioning): use the PyTorch backend for this")
        batch = sample.shape[0]
        steps = torch.as_tensor(timestep, dtype=torch.float32).reshape(-1)
        if steps.numel() == 1:
            steps = steps.expand(batch)
        feed = {"sample": sample.detach().to("cpu", torch.float32).numpy(),
                "timestep": steps.detach().to("cpu", torch.float32).contiguous().numpy(),
                "encoder_hidden_states": encoder_hidden_states.detach().to("cpu", torch.float32).numpy()}
        out = torch.from_numpy(self._runner(feed)).to(device=sample.device, dtype=sample.dtype)
        return UNet2DConditionOutput(sample=out) if return_dict else (out,)
