"""Build the loader's options from the flags, settings and paths of a running studio."""

from __future__ import annotations

from typing import TYPE_CHECKING

from modules.models.devices import device_choice
from modules.models.loader import LoadOptions

if TYPE_CHECKING:
    from modules.flags import Flags
    from modules.paths import Paths
    from modules.settings import SettingsStore


def load_options_for(flags: "Flags", settings: "SettingsStore", paths: "Paths") -> LoadOptions:
    """The options of the next load (the prediction-type setting is read at each load)."""
    device, dtype = device_choice(flags)
    override = settings.current.sd_prediction_type
    return LoadOptions(
        device=device,
        dtype=dtype,
        allow_pickle=flags.allow_pickle,
        prediction_type=None if override == "auto" else override,
        cache_dir=paths.cache_dir,
        vae_dir=paths.vae_dir,
        text_encoder_dir=paths.text_encoder_dir,
    )
