"""Build the loader's options from the flags and settings of a running studio."""

from __future__ import annotations

from typing import TYPE_CHECKING

from modules.models.loader import LoadOptions

if TYPE_CHECKING:
    from modules.app_context import AppContext


def load_options_for(ctx: "AppContext") -> LoadOptions:
    from modules.app_context import device_choice

    device, dtype = device_choice(ctx.flags)
    override = ctx.settings.current.sd_prediction_type
    return LoadOptions(
        device=device,
        dtype=dtype,
        allow_pickle=ctx.flags.allow_pickle,
        prediction_type=None if override == "auto" else override,
        cache_dir=ctx.paths.cache_dir,
        vae_dir=ctx.paths.vae_dir,
        text_encoder_dir=ctx.paths.text_encoder_dir,
    )
