"""Fit a request to what the loaded model can make, as AUTOMATIC1111 answers it, saying what changed.

A1111 answers requests the model cannot make exactly with an image anyway: a width that is not a
multiple of 8 comes out at the multiple below (its latents are ``width // 8``), so Open WebUI's
free-form sizes and SillyTavern's 960x540 preset work there. Atelier's own UI and job API refuse such
values with a clear message instead; a request with ``fit_to_model`` (the A1111 API sets it) is fitted:

* a size is rounded to the nearest multiple of the family's ``size_multiple`` (8 for SD/SDXL, 16 for
  FLUX; a tie goes down, as A1111's latent floor does) and brought into the family's size range;
* clip skip deeper than the text encoder is clamped to its deepest layer (SillyTavern's slider goes to 12;
  the embedded default's encoder has 3 layers), where going on would index past the encoder.

Every change is returned as a sentence for the result's ``warnings`` (the A1111 API puts them in ``info``);
the infotext shows the values used. A strict request gets :class:`InvalidRequestError` naming the limit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from modules.generation.validation import InvalidRequestError

if TYPE_CHECKING:
    from modules.generation.requests import GenerationRequest
    from modules.models.families import ModelFamily
    from modules.models.loader import LoadedModel

R = TypeVar("R", bound="GenerationRequest")


def nearest_multiple(value: int, multiple: int) -> int:
    """The multiple of ``multiple`` nearest to ``value`` (a tie goes down); never below ``multiple``."""
    low = value // multiple * multiple
    return max(multiple, low if value - low <= multiple // 2 else low + multiple)


def fit_dimension(value: int, family: "ModelFamily") -> int:
    """``value`` as the nearest size ``family`` can make (see :func:`nearest_multiple`), within its range."""
    multiple = family.size_multiple
    lowest = -(-family.min_size // multiple) * multiple
    highest = family.max_size // multiple * multiple
    return min(highest, max(lowest, nearest_multiple(value, multiple)))


def _fit_size(req: R, family: "ModelFamily", notes: list[str]) -> dict[str, int]:
    changes: dict[str, int] = {}
    for label in ("width", "height"):
        value = getattr(req, label)
        if value is None:
            continue
        fitted = fit_dimension(value, family)
        if fitted != value:
            changes[label] = fitted
    if changes:
        asked = f"{req.width}x{req.height}" if req.width is not None and req.height is not None else \
            ", ".join(f"{label} {getattr(req, label)}" for label in changes)
        used_w, used_h = changes.get("width", req.width), changes.get("height", req.height)
        used = f"{used_w}x{used_h}" if used_w is not None and used_h is not None else \
            ", ".join(f"{label} {value}" for label, value in changes.items())
        notes.append(f"size {asked} is not one {family.label} can make (multiples of {family.size_multiple}, "
                     f"{family.min_size}..{family.max_size}): generated at {used}")
    return changes


def _fit_clip_skip(req: R, model: "LoadedModel", notes: list[str]) -> dict[str, int]:
    from modules.generation.prompts.conditioning import clip_skip_depth  # imports torch: only once a model is loaded

    depth = clip_skip_depth(model.pipeline, model.family.id)
    if depth is None or req.clip_skip <= depth:
        return {}
    if not req.fit_to_model:
        raise InvalidRequestError(f"clip skip {req.clip_skip} is deeper than the text encoder of this "
                                  f"{model.family.label} model ({depth} layers): use 1..{depth}")
    notes.append(f"clip skip {req.clip_skip} is deeper than the text encoder of this model ({depth} layers): "
                 f"used {depth}")
    return {"clip_skip": depth}


def fit_to_model(req: R, model: "LoadedModel") -> tuple[R, list[str]]:
    """``req`` fitted to ``model`` (the same object when nothing changes) and what was changed.

    Sizes are fitted only with ``req.fit_to_model`` (otherwise :func:`~modules.generation.validation.resolve_size`
    refuses them later, naming the multiple); too deep a clip skip is clamped, or refused when not fitting.
    """
    notes: list[str] = []
    changes: dict[str, int] = {}
    if req.fit_to_model:
        changes.update(_fit_size(req, model.family, notes))
    changes.update(_fit_clip_skip(req, model, notes))
    return (req.model_copy(update=changes) if changes else req), notes
