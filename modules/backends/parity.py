"""The first-use check of an exported UNet against PyTorch: one denoising call on fixed random inputs.

Recorded in ``parity-<backend>-<precision>.json`` beside the export (so it runs once per model and
backend); a backend whose output differs by more than the tolerance is refused for that model with the
figures, never used silently.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

#: largest difference allowed, relative to the largest PyTorch output value
TOLERANCE = {"f32": 1e-3, "bf16": 5e-2}


@dataclass(frozen=True)
class Parity:
    backend: str
    precision: str
    max_abs: float
    relative: float
    tolerance: float
    ok: bool
    checked_at: float


def check_parity(unet: Any, runtime: Any, backend: str, precision: str, folder: Path) -> Parity:
    record = folder / f"parity-{backend}-{precision}.json"
    if record.is_file():
        try:
            return Parity(**json.loads(record.read_text(encoding="utf-8")))
        except (ValueError, TypeError):
            pass
    generator = torch.Generator().manual_seed(0)
    channels = int(unet.config.in_channels)
    width = int(unet.config.cross_attention_dim if isinstance(unet.config.cross_attention_dim, int)
                else unet.config.cross_attention_dim[0])
    sample = torch.randn(2, channels, 16, 16, generator=generator)
    states = torch.randn(2, 77, width, generator=generator)
    timestep = torch.tensor([700.0, 700.0])
    with torch.no_grad():
        reference = unet(sample.to(unet.device, unet.dtype), timestep.to(unet.device),
                         encoder_hidden_states=states.to(unet.device, unet.dtype)).sample.float().cpu()
        got = runtime(sample, timestep, encoder_hidden_states=states).sample.float()
    max_abs = float((got - reference).abs().max())
    relative = max_abs / max(float(reference.abs().max()), 1e-8)
    tolerance = TOLERANCE.get(precision, 1e-3)
    parity = Parity(backend, precision, max_abs, relative, tolerance, relative <= tolerance, time.time())
    record.write_text(json.dumps(asdict(parity), indent=2), encoding="utf-8")
    return parity
