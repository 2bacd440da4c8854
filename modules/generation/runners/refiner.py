"""SDXL refiner switch-over (A1111 ``refiner_checkpoint`` / ``refiner_switch_at``).

The base model denoises up to the switch point (``denoising_end``) and returns latents; the refiner
continues from exactly there (``denoising_start``) on the same latents, with the same sampler and
step count, and decodes. ``refiner_switch_at`` is the fraction of the *steps that run*: for txt2img
the schedule fraction is the switch point itself, for an img2img pass at strength ``s`` it is
``1 - s * (1 - switch_at)``. diffusers cuts the schedule by timestep, which matches A1111's default
sigma-based switch closely. With hires fix the refiner takes over in the second pass (A1111's
default ``hires_fix_refiner_pass = "second pass"``).

Both models must share SDXL's latent space (SDXL base / SDXL refiner checkpoints). The refiner is
loaded next to the base by :meth:`modules.models.manager.ModelManager.ensure_refiner` (one kept).
Infotext: ``Refiner: <name> [<hash>]``, ``Refiner switch at: 0.8``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from modules.generation.sampling.latent_codec import derived_pipeline
from modules.generation.sampling.passes import Pass, switch_steps
from modules.generation.validation import InvalidRequestError

if TYPE_CHECKING:
    import torch

    from modules.generation.requests import GenerationRequest
    from modules.generation.sampling.samplers import ResolvedSampler
    from modules.models.loader import LoadedModel
    from modules.models.manager import ActiveModel

#: families whose latents a refiner can continue (SDXL's VAE space)
SDXL_LATENT_FAMILIES = ("sdxl", "sdxl-refiner")


class RefinerSource(Protocol):
    """Loads the refiner next to the active model (ModelManager implements it)."""

    def ensure_refiner(self, reference: str) -> "ActiveModel": ...


def load_refiner(req: "GenerationRequest", base: "LoadedModel",
                 refiners: RefinerSource | None) -> "ActiveModel | None":
    """The refiner for ``req`` (None when none was asked for), checked against the base model."""
    if req.refiner_checkpoint is None:
        return None
    if refiners is None:
        raise InvalidRequestError("a refiner was requested but this runner cannot load a second model")
    if base.family.id not in SDXL_LATENT_FAMILIES:
        raise InvalidRequestError(f"the refiner switch-over needs an SDXL base model; {base.family.label} "
                                  f"latents cannot be continued by another model")
    refiner = refiners.ensure_refiner(req.refiner_checkpoint)
    if refiner.model.family.id not in SDXL_LATENT_FAMILIES:
        raise InvalidRequestError(f"refiner {refiner.info.name} is a {refiner.model.family.label} checkpoint; "
                                  f"use an SDXL refiner or SDXL base checkpoint")
    if refiner.model.task == "inpaint":
        raise InvalidRequestError(f"refiner {refiner.info.name} is an inpainting checkpoint")
    return refiner


def schedule_boundary(switch_at: float, strength: float = 1.0) -> float:
    """The schedule fraction where the refiner takes over, for a pass at ``strength``."""
    return 1.0 - strength * (1.0 - switch_at)


def refiner_infotext(refiner: "ActiveModel", switch_at: float) -> dict[str, Any]:
    short = refiner.info.name_for_extra + (f" [{refiner.shorthash}]" if refiner.shorthash else "")
    return {"Refiner": short, "Refiner switch at": switch_at}


def refiner_pass(refiner: "ActiveModel", sampler: "ResolvedSampler", latents: "torch.Tensor", *, steps: int,
                 boundary: float, prompts: list[str], negatives: list[str], seeds: list[int], batch_index: int,
                 generators: list[Any], output_type: str = "pil") -> Pass:
    """The refiner's pass: continue ``latents`` from ``boundary`` to the end of the schedule."""
    model = refiner.model
    pipe = derived_pipeline(model, "img2img")
    kwargs: dict[str, Any] = {"image": latents.to(device=pipe.device, dtype=pipe.dtype), "strength": 1.0,
                              "denoising_start": boundary, "generator": generators, "output_type": output_type}
    return Pass(task="refiner", model=model, pipe=pipe, sampler=sampler, prompts=prompts, negatives=negatives,
                seeds=seeds, batch_index=batch_index, steps=steps, expected_steps=switch_steps(steps, boundary, None),
                kwargs=kwargs)
