"""✨ hires upscale of a selected result (A1111's "upscale the selected image with hires fix" button).

A1111 reruns the selected image through its hires pass. The studio's honest, simpler version runs the
whole generation again with the hires fix on: the selected image's own parameters (its infotext: prompt,
negative prompt, seed and variation seed, steps, sampler, schedule, CFG, size, clip skip), the tab's
current hires settings (upscaler, scale or target size, hires steps, denoising), one image. With the same
seed, model and sampler the first pass makes the same picture again, then the hires pass enlarges it.
"""

from __future__ import annotations

from typing import Any, Mapping

from modules.images.infotext import infotext_to_request_fields, parse_infotext

#: what the selected image decides; everything else (the hires settings above all) comes from the tab
FROM_IMAGE = ("prompt", "negative_prompt", "seed", "subseed", "subseed_strength", "seed_resize_from_w",
              "seed_resize_from_h", "steps", "sampler_name", "scheduler", "cfg_scale", "width", "height",
              "clip_skip", "distilled_cfg_scale")


class HiresAgainError(ValueError):
    """The selected image cannot be upscaled this way (the message is shown to the user)."""


def hires_request_values(tab_values: Mapping[str, Any], infotext: str) -> dict[str, Any]:
    """The txt2img request fields for a hires rerun of the image whose infotext is ``infotext``."""
    text = (infotext or "").strip()
    if not text:
        raise HiresAgainError("Select a generated image first: its parameters are needed to upscale it.")
    parsed = infotext_to_request_fields(parse_infotext(text))
    if parsed.get("enable_hr"):
        raise HiresAgainError("That image was already made with the hires fix.")
    if "seed" not in parsed:
        raise HiresAgainError("The selected image has no seed in its parameters: it cannot be made again.")
    values = dict(tab_values)
    values.update({name: parsed[name] for name in FROM_IMAGE if name in parsed})
    values.update(enable_hr=True, batch_size=1, n_iter=1)
    return values
