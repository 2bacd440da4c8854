"""Prediction type (v vs epsilon), which cannot be read from the header's shapes.

Order: user override, the file's metadata (``modelspec.prediction_type``), an A1111 sidecar
``<name>.yaml`` (``parameterization: "v"``), ComfyUI's ``v_pred`` marker key; then, for SD 2.x only,
A1111's probe (``sd_models_config.is_using_v_parameterization_for_sd2``) run on the loaded UNet, and
the family's default when nothing decides. A ``ztsnr`` marker key declares a zero-terminal-SNR schedule.
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Mapping

from modules.models.errors import ModelLoadError

if TYPE_CHECKING:
    from torch import nn

_ALIASES = {
    "v": "v_prediction", "v_prediction": "v_prediction", "v-prediction": "v_prediction", "v-param": "v_prediction",
    "epsilon": "epsilon", "eps": "epsilon",
}
METADATA_KEYS = ("modelspec.prediction_type", "prediction_type")


#: Scheduler settings for a zero-terminal-SNR model (Lin et al. 2023): betas rescaled so the last step is pure
#: noise, and sampling that starts from that step ("trailing" spacing). Samplers must accept the flag.
ZERO_TERMINAL_SNR: Mapping[str, object] = MappingProxyType({"rescale_betas_zero_snr": True, "timestep_spacing": "trailing"})


def normalise_prediction(value: object) -> str | None:
    """Map spellings ("v", "v-prediction", "eps", ...) to diffusers names, None if unknown."""
    return _ALIASES.get(str(value).strip().lower()) if value is not None else None


def from_metadata(metadata: Mapping[str, str]) -> str | None:
    """Prediction type declared in safetensors metadata."""
    for key in METADATA_KEYS:
        if (found := normalise_prediction(metadata.get(key))) is not None:
            return found
    return None


def sidecar_path(path: Path) -> Path:
    """A1111 config sidecar: ``<name>.yaml`` next to the checkpoint."""
    return Path(path).with_suffix(".yaml")


def from_sidecar(path: Path) -> str | None:
    """``v_prediction`` when the sidecar sets ``parameterization: "v"``, epsilon when it exists without it."""
    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        return None
    import yaml

    try:
        data = yaml.safe_load(sidecar.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ModelLoadError(sidecar, f"invalid YAML config sidecar ({type(exc).__name__})") from exc
    value = _find_key(data, "parameterization")
    return "v_prediction" if normalise_prediction(value) == "v_prediction" else "epsilon"


def _find_key(data: object, name: str) -> object:
    """Depth-first search for ``name`` in nested dicts/lists."""
    if isinstance(data, dict):
        if name in data:
            return data[name]
        children = list(data.values())
    elif isinstance(data, list):
        children = data
    else:
        return None
    for child in children:
        if (found := _find_key(child, name)) is not None:
            return found
    return None


def declared_prediction(path: Path, metadata: Mapping[str, str], override: str | None) -> tuple[str | None, str]:
    """(prediction type, source) from override / metadata / sidecar; (None, "undetermined") otherwise."""
    if override is not None:
        value = normalise_prediction(override)
        if value is None:
            raise ModelLoadError(path, f"unknown prediction type override '{override}' (use epsilon or v_prediction)")
        return value, "override"
    if (value := from_metadata(metadata)) is not None:
        return value, "metadata"
    if Path(path).is_file() and (value := from_sidecar(path)) is not None:
        return value, "sidecar"
    return None, "undetermined"


def probe_v_prediction(unet: "nn.Module") -> bool:
    """A1111's test: at t=999 on a flat 0.5 latent, a v-model's output minus the input averages below -1.

    (A v-model predicts ``v = alpha*eps - sigma*x0`` which at the last step is about ``-x0``; an
    epsilon model predicts noise around zero mean.) Runs once on the UNet's own device and dtype.
    """
    import torch

    param = next(unet.parameters())
    config = unet.config
    channels = int(config.in_channels)
    with torch.no_grad():
        sample = torch.full((1, channels, 8, 8), 0.5, device=param.device, dtype=param.dtype)
        context = torch.full((1, 2, int(config.cross_attention_dim)), 0.5, device=param.device, dtype=param.dtype)
        timestep = torch.tensor([999], device=param.device)
        out = unet(sample, timestep, encoder_hidden_states=context).sample
        difference = (out.float() - sample[:, : out.shape[1]].float()).mean().item()
    return difference < -1
