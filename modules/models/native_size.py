"""The size a checkpoint really makes, without loading it: what the Models inspector shows.

The family registry knows each family's usual size (SD 1.x 512, SDXL 1024), but a model may differ: the
embedded default model is an SD 1.x at 64×64. The loader takes the size from the UNet's ``sample_size`` times
the VAE's scale (``2 ** (len(vae block_out_channels) - 1)``), overridden by ``modelspec.resolution`` in the
file's metadata; this module reads the same from the header (single files) or the configs (diffusers folders),
or from the loaded model itself. Header and JSON reads only: no torch.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from modules.models.detect import Detection
    from modules.models.types import LoadedModel

_RESOLUTION = re.compile(r"^\s*(\d+)\s*[x×,]\s*(\d+)\s*$")


def _from_configs(unet: Mapping[str, Any], vae: Mapping[str, Any]) -> tuple[int, int] | None:
    sample = unet.get("sample_size")
    channels = vae.get("block_out_channels")
    if not sample or not isinstance(channels, (list, tuple)) or not channels:
        return None
    factor = 2 ** (len(channels) - 1)
    height, width = (sample, sample) if isinstance(sample, int) else tuple(sample)[:2]
    return int(width) * factor, int(height) * factor


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def native_size(path: Path, detection: "Detection", loaded: "LoadedModel | None" = None) -> tuple[tuple[int, int], str]:
    """((width, height), where it was read) for the checkpoint at ``path``."""
    if loaded is not None and Path(loaded.path).resolve() == Path(path).resolve():
        return tuple(loaded.native_size), "the loaded model"  # type: ignore[return-value]
    family = detection.family
    fallback = (tuple(family.default_size), f"the {family.label} family's default")
    if family.architecture != "ldm-unet":
        return fallback  # type: ignore[return-value]
    if path.is_dir():
        size = _from_configs(_read_json(path / "unet" / "config.json"), _read_json(path / "vae" / "config.json"))
        return (size, "the folder's UNet and VAE configs") if size else fallback  # type: ignore[return-value]
    if path.suffix.lower() != ".safetensors":
        return fallback  # type: ignore[return-value]
    from modules.models.arch.overlay import build_component_configs
    from modules.models.errors import ModelLoadError
    from modules.models.header import read_safetensors_header

    try:
        header = read_safetensors_header(path)
    except ModelLoadError:
        return fallback  # type: ignore[return-value]
    if match := _RESOLUTION.match(header.metadata.get("modelspec.resolution", "")):
        return (int(match[1]), int(match[2])), "the file's modelspec.resolution"
    try:
        configs = build_component_configs(family, header.shapes(), header.metadata)
    except (ValueError, KeyError):  # ConfigError, ShapeError: the family's size then
        return fallback  # type: ignore[return-value]
    size = _from_configs(configs.unet, configs.vae)
    return (size, "the file's UNet and VAE") if size else fallback  # type: ignore[return-value]
