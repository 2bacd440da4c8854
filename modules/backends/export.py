"""The UNet exported to ONNX once, cached on disk by the model's hash, reused by ONNX Runtime and OpenVINO.

``<cache>/backends/<key>/unet.onnx`` where ``key`` is the checkpoint's SHA-256 (or, for a folder, its path,
size and time) plus the UNet's config: a new or changed model is exported again, an unchanged one never.
The graph takes ``sample`` (batch, channels, height, width: all but channels dynamic), ``timestep``
(batch) and ``encoder_hidden_states`` (batch, tokens, width), and returns the noise prediction.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

INPUTS = ("sample", "timestep", "encoder_hidden_states")
OPSET = 17


class _Graph(torch.nn.Module):
    def __init__(self, unet: Any) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        return self.unet(sample, timestep, encoder_hidden_states=encoder_hidden_states, return_dict=False)[0]


def export_key(identity: str, unet: Any) -> str:
    config = json.dumps({k: v for k, v in dict(unet.config).items() if not k.startswith("_")}, sort_keys=True,
                        default=str)
    return hashlib.sha256(f"{identity}\n{config}\nopset{OPSET}".encode()).hexdigest()[:24]


def exported_unet(unet: Any, folder: Path) -> Path:
    """``folder/unet.onnx`` (exported now unless it exists), written atomically."""
    path = folder / "unet.onnx"
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    channels = int(unet.config.in_channels)
    width = int(unet.config.cross_attention_dim if isinstance(unet.config.cross_attention_dim, int)
                else unet.config.cross_attention_dim[0])
    example = (torch.randn(2, channels, 16, 16), torch.full((2,), 500.0), torch.randn(2, 77, width))
    graph = _Graph(unet).eval()
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        target = Path(scratch) / "unet.onnx"
        with torch.no_grad():
            torch.onnx.export(graph, example, str(target), dynamo=False, input_names=list(INPUTS),
                              output_names=["noise_pred"], opset_version=OPSET,
                              dynamic_axes={"sample": {0: "batch", 2: "height", 3: "width"}, "timestep": {0: "batch"},
                                            "encoder_hidden_states": {0: "batch", 1: "tokens"},
                                            "noise_pred": {0: "batch", 2: "height", 3: "width"}})
        for produced in Path(scratch).iterdir():  # the graph, and its external weights file when large
            os.replace(produced, folder / produced.name)
    return path
