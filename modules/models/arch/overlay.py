"""Build each component's config: shipped family config < header-shape dims < metadata overrides."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from modules.models.arch.clip import clip_dims, openclip_dims
from modules.models.arch.shapes import Shapes, ShapeError
from modules.models.arch.unet import head_counts, unet_dims
from modules.models.arch.vae import vae_dims
from modules.models.families import ModelFamily, TextEncoderSpec

#: safetensors ``__metadata__`` key holding explicit per-component config overrides (JSON object).
COMPONENTS_METADATA_KEY = "atelier.components"
COMPONENT_NAMES = ("unet", "vae", "text_encoder", "text_encoder_2")


class ConfigError(ValueError):
    """The combined config is unusable; ``component`` names the part at fault."""

    def __init__(self, message: str, component: str = "") -> None:
        super().__init__(message)
        self.component = component


@dataclass
class ComponentConfigs:
    """Final configs for every component of an LDM-family checkpoint."""

    unet: dict
    vae: dict
    text_encoders: dict[str, dict] = field(default_factory=dict)
    scheduler: dict = field(default_factory=dict)
    model_index: dict = field(default_factory=dict)


def read_json(path: Path) -> dict:
    """Load one JSON object file."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def family_config(family: ModelFamily, component: str) -> dict:
    """The shipped ``configs/families/<id>/<component>/config.json`` (scheduler: scheduler_config.json)."""
    name = "scheduler_config.json" if component == "scheduler" else "config.json"
    return read_json(family.config_path / component / name)


def metadata_overrides(metadata: Mapping[str, str]) -> dict[str, dict]:
    """Parse the optional ``atelier.components`` metadata; ConfigError when it is malformed."""
    raw = metadata.get(COMPONENTS_METADATA_KEY)
    if raw is None:
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"metadata '{COMPONENTS_METADATA_KEY}' is not valid JSON ({exc.msg})") from exc
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ConfigError(f"metadata '{COMPONENTS_METADATA_KEY}' must map component names to objects")
    unknown = set(data) - set(COMPONENT_NAMES)
    if unknown:
        raise ConfigError(f"metadata '{COMPONENTS_METADATA_KEY}' names unknown components {sorted(unknown)}")
    return data


def build_component_configs(
    family: ModelFamily, shapes: Shapes, metadata: Mapping[str, str], *,
    vae_shapes: Shapes | None = None, vae_prefix: str | None = None, vae_metadata: Mapping[str, str] | None = None,
) -> ComponentConfigs:
    """Configs for an LDM-family single file.

    ``vae_shapes``/``vae_prefix``/``vae_metadata`` describe an external VAE file replacing the
    checkpoint's own; its ``vae`` overrides then come from that file's metadata.
    """
    overrides = metadata_overrides(metadata)
    encoders = {
        spec.component: _with_shapes(spec.component, lambda spec=spec: _encoder_config(family, spec, shapes))
        | overrides.get(spec.component, {})
        for spec in family.text_encoders
    }
    pooled = encoders.get("text_encoder_2", {}).get("projection_dim")
    unet = family_config(family, "unet") | _with_shapes("unet", lambda: unet_dims(
        shapes, family.unet_prefix, add_time_ids=family.add_time_ids, pooled_dim=pooled
    ))
    if family.unet_head_channels and (heads := head_counts(unet["block_out_channels"], family.unet_head_channels)):
        unet["attention_head_dim"] = heads
    unet.update(overrides.get("unet", {}))
    prefix = family.vae_prefix if vae_prefix is None else vae_prefix
    vae = family_config(family, "vae") | _with_shapes("vae", lambda: vae_dims(
        shapes if vae_shapes is None else vae_shapes, prefix
    ))
    vae.update((overrides if vae_shapes is None else metadata_overrides(vae_metadata or {})).get("vae", {}))
    configs = ComponentConfigs(
        unet=unet, vae=vae, text_encoders=encoders, scheduler=family_config(family, "scheduler"),
        model_index=read_json(family.config_path / "model_index.json"),
    )
    validate(configs)
    return configs


def _with_shapes(component: str, derive: Callable[[], dict]) -> dict:
    """Run a shape reader, turning its ShapeError into a ConfigError for ``component``."""
    try:
        return derive()
    except ShapeError as exc:
        raise ConfigError(f"{component}: {exc}", component) from exc


def _encoder_config(family: ModelFamily, spec: TextEncoderSpec, shapes: Shapes) -> dict:
    """Shipped text-encoder config overlaid with header dims (heads = width / 64 when it divides)."""
    base = family_config(family, spec.component)
    if spec.layout == "clip":
        dims = clip_dims(shapes, spec.prefix)
    else:
        dims = openclip_dims(
            shapes, spec.prefix, drop_last_layer=spec.drop_last_layer, with_projection=spec.with_projection,
            family_layers=base.get("num_hidden_layers"),
        )
    if dims["hidden_size"] % family.clip_head_channels == 0:
        dims["num_attention_heads"] = dims["hidden_size"] // family.clip_head_channels
    return base | dims


def validate(configs: ComponentConfigs) -> None:
    """Cross-component and divisibility checks, with messages naming the component."""
    unet, vae = configs.unet, configs.vae
    _check_groups("unet", unet["block_out_channels"], unet.get("norm_num_groups", 32))
    _check_groups("vae", vae["block_out_channels"], vae.get("norm_num_groups", 32))
    heads = unet.get("num_attention_heads") or unet.get("attention_head_dim")
    per_level = heads if isinstance(heads, list) else [heads] * len(unet["block_out_channels"])
    if len(per_level) != len(unet["block_out_channels"]) or any(
        not h or c % h for c, h in zip(unet["block_out_channels"], per_level)
    ):
        raise ConfigError(
            f"UNet: cannot infer attention heads for channels {unet['block_out_channels']} "
            f"(family value {heads}); add '{COMPONENTS_METADATA_KEY}' metadata", "unet"
        )
    for name, enc in configs.text_encoders.items():
        if not enc.get("num_attention_heads") or enc["hidden_size"] % enc["num_attention_heads"]:
            raise ConfigError(f"{name}: cannot infer attention heads for hidden size {enc['hidden_size']}", name)
    context = sum(enc["hidden_size"] for enc in configs.text_encoders.values())
    if unet["cross_attention_dim"] != context:
        raise ConfigError(
            f"UNet expects text features of width {unet['cross_attention_dim']} but the text encoder(s) give "
            f"{context} (component from a different family?)", "text_encoder"
        )
    latent = vae["latent_channels"]
    if unet["in_channels"] not in (latent, 2 * latent + 1) or unet["out_channels"] != latent:
        raise ConfigError(
            f"VAE has {latent} latent channels but the UNet works on {unet['in_channels']}->"
            f"{unet['out_channels']} channels (VAE from a different family, or an unsupported UNet variant)", "vae"
        )


def _check_groups(name: str, channels: list[int], groups: int) -> None:
    if any(c % groups for c in channels):
        label = name.upper() if name == "vae" else "UNet"
        raise ConfigError(f"{label}: channels {channels} are not divisible by norm_num_groups={groups}", name)
