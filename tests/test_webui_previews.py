"""Cheap live previews (A1111 "Approx cheap"): the linear latent->RGB projection per family, FLUX
unpacking, batch grids, and the cadence setting."""

from __future__ import annotations

import pytest
import torch

from modules.generation.sampling.previews import (FLUX_BIAS, FLUX_COEFFS, SD_COEFFS, SDXL_COEFFS, latents_to_preview,
                                         preview_every, unpack)
from modules.settings import Settings


def _expected(row: tuple[float, ...], bias: tuple[float, ...] = (0.0, 0.0, 0.0)) -> tuple[int, ...]:
    return tuple(round(max(0.0, min(1.0, (c + b + 1) / 2)) * 255) for c, b in zip(row, bias))


@pytest.mark.parametrize("family, coeffs", [("sd1", SD_COEFFS), ("sd2-768-v", SD_COEFFS), ("sdxl", SDXL_COEFFS)])
def test_four_channel_projection_per_family(family: str, coeffs: tuple) -> None:
    for channel in range(4):
        latents = torch.zeros(1, 4, 2, 3)
        latents[0, channel] = 1.0
        image = latents_to_preview(latents, family, scale=1)
        assert image.size == (3, 2)
        assert image.getpixel((1, 1)) == _expected(coeffs[channel])


def test_flux_latents_are_unpacked_and_use_the_sixteen_channel_projection() -> None:
    from diffusers import FluxPipeline

    latents = torch.randn(1, 16, 4, 6)  # (B, C, h, w) for a 48x32-pixel image with VAE factor 8
    packed = FluxPipeline._pack_latents(latents, 1, 16, 4, 6)
    assert torch.equal(unpack(packed, (48, 32)), latents)
    one = torch.zeros(1, 16, 2, 2)
    one[0, 9] = 1.0
    image = latents_to_preview(FluxPipeline._pack_latents(one, 1, 16, 2, 2), "flux-dev", (16, 16), scale=1)
    assert image.getpixel((0, 0)) == _expected(FLUX_COEFFS[9], FLUX_BIAS)


def test_a_batch_becomes_a_grid_and_is_enlarged_for_viewing() -> None:
    image = latents_to_preview(torch.zeros(3, 4, 8, 8), "sd1")
    assert image.size == (2 * 8 * 8, 2 * 8 * 8)  # 2x2 grid of 8x8 latents, enlarged x8


def test_unknown_channel_counts_still_give_an_image() -> None:
    assert latents_to_preview(torch.randn(1, 8, 4, 4), "other", scale=2).size == (8, 8)


def test_cadence_follows_the_settings() -> None:
    assert preview_every(Settings()) == 5
    assert preview_every(Settings(show_progress_every_n_steps=2)) == 2
    assert preview_every(Settings(show_progress_every_n_steps=-1)) == 0
    assert preview_every(Settings(live_previews_enable=False)) == 0


def test_sampler_attaches_a_preview_every_n_steps() -> None:
    from modules.generation.sampling.passes import BatchProgress
    from modules.jobs.progress import JobControl

    control = JobControl()
    control.preview_every = 3  # type: ignore[attr-defined]  # set by the service from the settings
    progress = BatchProgress(control, total=7)
    for step in range(1, 8):
        progress.report(step, lambda: "preview")
    assert control.progress.preview_id == 2  # steps 3 and 6
    assert control.preview() == "preview"
    off = JobControl()
    off.preview_every = 0  # type: ignore[attr-defined]
    BatchProgress(off, total=4).report(4, lambda: "preview")
    assert off.progress.preview_id == 0 and off.preview() is None
