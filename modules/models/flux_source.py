"""What a FLUX.1 single file holds, read from its safetensors header only.

A :class:`ComponentSource` names one pipeline component's weights (file + keys); a
:class:`FluxFile` is a checkpoint's variant, transformer layout and the components embedded in it
(ComfyUI all-in-one files carry CLIP-L, T5-XXL and the VAE next to the transformer).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modules.models.errors import ModelLoadError
from modules.models.header import SafetensorsHeader, read_safetensors_header

#: Safetensors metadata key: JSON object keyed by component, config fields the shapes cannot tell.
METADATA_KEY = "atelier.components"
COMPONENTS = ("transformer", "vae", "text_encoder", "text_encoder_2")


def component_overrides(path: Path, header: SafetensorsHeader) -> dict[str, dict[str, Any]]:
    """The ``atelier.components`` metadata of a file (empty when absent)."""
    raw = header.metadata.get(METADATA_KEY)
    if raw is None:
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ModelLoadError(path, f"invalid {METADATA_KEY} metadata ({exc.msg})") from exc
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ModelLoadError(path, f"invalid {METADATA_KEY} metadata (must map component names to objects)")
    return data


@dataclass(frozen=True)
class ComponentSource:
    """Where one pipeline component's weights are: a file and the keys of that file holding them."""

    component: str
    path: Path
    header: SafetensorsHeader
    keys: tuple[str, ...]

    @property
    def overrides(self) -> dict[str, Any]:
        """This component's entry in its own file's ``atelier.components`` metadata."""
        return component_overrides(self.path, self.header).get(self.component, {})


@dataclass(frozen=True)
class FluxFile:
    """A FLUX checkpoint: variant, transformer layout and the components found inside it."""

    path: Path
    header: SafetensorsHeader
    variant: str  # "dev" | "schnell"
    transformer_layout: str  # "bfl" | "diffusers"
    sources: dict[str, ComponentSource] = field(default_factory=dict)

    @property
    def missing(self) -> tuple[str, ...]:
        """Components that must come from other files."""
        return tuple(c for c in COMPONENTS if c not in self.sources)


def inspect_flux_file(path: Path, header: SafetensorsHeader | None = None) -> FluxFile:
    """Read a FLUX single file's header and say what it contains (no weights are read)."""
    from modules.models.convert import bfl

    path = Path(path)
    header = header or read_safetensors_header(path)
    keys = list(header.tensors)
    transformer = bfl.transformer_keys(dict.fromkeys(keys))
    if bfl.BFL_MARKER in transformer:
        layout, variant = "bfl", "dev" if bfl.GUIDANCE_MARKER in transformer else "schnell"
    elif bfl.DIFFUSERS_MARKER in transformer:
        layout = "diffusers"
        variant = "dev" if bfl.DIFFUSERS_GUIDANCE_MARKER in transformer else "schnell"
    else:
        raise ModelLoadError(path, f"no FLUX.1 transformer found (expected {bfl.BFL_MARKER})")
    prefix = bfl.TRANSFORMER_PREFIX if any(k.startswith(bfl.TRANSFORMER_PREFIX) for k in keys) else ""
    sources = {"transformer": ComponentSource("transformer", path, header, tuple(prefix + k for k in transformer))}
    embedded = {
        "text_encoder": [k for k in keys if k.startswith(bfl.CLIP_L_PREFIX)],
        "text_encoder_2": [k for k in keys if k.startswith(bfl.T5XXL_PREFIX)],
        "vae": [k for k in keys if k.startswith(bfl.VAE_PREFIXES)],
    }
    for component, found in embedded.items():
        if found:
            sources[component] = ComponentSource(component, path, header, tuple(found))
    return FluxFile(path, header, variant, layout, sources)
