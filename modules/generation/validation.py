"""Checks of a request against the loaded model family, with clear messages."""

from __future__ import annotations

from typing import TYPE_CHECKING

from modules.generation.sampling.samplers import SamplerNotSupportedError, default_sampler_name

if TYPE_CHECKING:
    from modules.generation.sampling.samplers import ResolvedSampler
    from modules.models.loader import LoadedModel


class InvalidRequestError(ValueError):
    """A request that cannot run on the loaded model (message is shown to the user)."""


def check_task(model: "LoadedModel", task: str) -> None:
    """Refuse a job kind the loaded family has no pipeline for (e.g. txt2img on a refiner)."""
    if task == "txt2img" and not model.family.supports_txt2img:
        raise InvalidRequestError(
            f"{model.family.label} checkpoints refine existing images and cannot start from text: "
            f"use img2img, or load an SDXL base model for txt2img")


def resolve_size(width: int | None, height: int | None, model: "LoadedModel") -> tuple[int, int]:
    """Fill a missing size from the model's native size and validate against its family."""
    native_w, native_h = model.native_size
    w = native_w if width is None else width
    h = native_h if height is None else height
    family = model.family
    multiple = family.size_multiple
    for label, value in (("width", w), ("height", h)):
        if value % multiple:
            lower, upper = value // multiple * multiple, (value // multiple + 1) * multiple
            raise InvalidRequestError(
                f"{label} {value} is not a multiple of {multiple} as {family.label} needs; "
                f"use {lower or upper} or {upper}")
        if not family.min_size <= value <= family.max_size:
            raise InvalidRequestError(
                f"{label} {value} is outside {family.min_size}..{family.max_size} for {family.label}")
    return w, h


def check_sampler_for_model(resolved: "ResolvedSampler", model: "LoadedModel") -> None:
    """Refuse a sampler/schedule pair the loaded model's pipeline cannot run."""
    pt = model.prediction_type
    if not resolved.supports(pt):
        raise SamplerNotSupportedError(
            f"sampler {resolved.sampler_name!r} with schedule {resolved.schedule!r} cannot run "
            f"{model.family.label} ({pt} prediction); try {default_sampler_name(pt)!r}")
    if model.family.architecture == "flux":
        # FluxPipeline always passes sigmas= and mu= to set_timesteps
        params = resolved.set_timesteps_params(pt)
        config = model.scheduler_config
        if "sigmas" not in params or "mu" not in params or (
                "mu" in params and not config.get("use_dynamic_shifting", False)
                and resolved.scheduler_class(pt).__name__ != "FlowMatchEulerDiscreteScheduler"):
            raise SamplerNotSupportedError(
                f"sampler {resolved.sampler_name!r} does not work with the FLUX pipeline of this model; "
                f"try 'Euler'")



#: FLUX T5 prompt-token limits (schnell was distilled with 256, dev with 512)
MAX_SEQUENCE_LENGTH: dict[str, int] = {"flux-schnell": 256, "flux-dev": 512}


def resolve_max_sequence_length(value: int | None, model: "LoadedModel") -> int:
    """FLUX ``max_sequence_length``: the family maximum when None; refused above it."""
    limit = MAX_SEQUENCE_LENGTH.get(model.family.id, 512)
    if value is None:
        return limit
    if value > limit:
        raise InvalidRequestError(f"max_sequence_length {value} is above {model.family.label}'s limit of {limit}")
    return value


def size_for_image(width: int | None, height: int | None, image_size: tuple[int, int],
                   model: "LoadedModel") -> tuple[int, int]:
    """img2img processing size: the request's, else the init image's rounded to the family multiple."""
    family = model.family
    multiple = family.size_multiple

    def rounded(value: int) -> int:
        value = max(family.min_size, min(family.max_size, value))
        return max(multiple, int(round(value / multiple)) * multiple)

    w = rounded(image_size[0]) if width is None else width
    h = rounded(image_size[1]) if height is None else height
    return resolve_size(w, h, model)
