"""The X/Y/Z plot's axes: A1111 v1.10's table (labels, order, tabs, value kinds, label formats, costs), each
mapped to an update of the typed request, or refused with a reason where the studio cannot apply it.

The order is A1111's, so :func:`axes_for` gives A1111's **indices** per tab (txt2img and img2img differ:
txt2img has the Hires axes, img2img has Image CFG Scale, its own Sampler and Cond. Image Mask Weight).
The ControlNet axes (the sd-webui-controlnet extension appends its own in A1111) come last, here for the
request's ``controlnet_units``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from modules.generation.requests import GenerationRequest

#: ``apply(request, value, all values of the axis) -> field updates``
Apply = Callable[["GenerationRequest", Any, list[Any]], dict[str, Any]]


class AxisError(ValueError):
    """An axis that cannot be used (unknown, not of this tab, not supported, or a value it cannot apply)."""


@dataclass(frozen=True)
class Axis:
    label: str
    kind: str                     # "nothing", "int", "float", "str", "permutations"
    apply: Apply | None = None    # None: refused with ``refusal``
    tab: str = ""                 # "" both tabs, else "txt2img" or "img2img" only
    fmt: str = "label"            # "label" ("Steps: 20"), "raw", "join" (Prompt order), "path" (file name), "nothing"
    cost: float = 0.0
    choices: str | None = None    # where a dropdown's choices come from (samplers, checkpoints...); None: text only
    refusal: str = ""
    #: what a cell's request must have for this axis to change anything (an axis that would change nothing in
    #: any cell is refused, never silently ignored): (check, what to tell the user)
    needs: tuple[Callable[[Any], bool], str] | None = None

    @property
    def supported(self) -> bool:
        return self.apply is not None

    @property
    def is_seed(self) -> bool:
        return self.label in ("Seed", "Var. seed")

    def format(self, value: Any) -> str:
        """The cell label of ``value`` (A1111's format functions)."""
        if self.fmt == "nothing":
            return ""
        if isinstance(value, float):
            value = round(value, 8)
        if self.fmt == "raw":
            return str(value)
        if self.fmt == "join":
            return ", ".join(value)
        if self.fmt == "path":
            return os.path.basename(str(value))
        return f"{self.label}: {value}"

    def updates(self, request: "GenerationRequest", value: Any, values: list[Any]) -> dict[str, Any]:
        if self.apply is None:
            raise AxisError(f"the X/Y/Z axis {self.label!r} is not supported by this studio: {self.refusal}")
        return self.apply(request, value, values)


def field(name: str) -> Apply:
    def apply(request: "GenerationRequest", value: Any, values: list[Any]) -> dict[str, Any]:
        if name not in type(request).model_fields:
            raise AxisError(f"{name} is not a setting of {getattr(request, 'kind', 'this')} requests")
        return {name: value}
    return apply


def prompt_sr(request: "GenerationRequest", value: Any, values: list[Any]) -> dict[str, Any]:
    """Prompt S/R: every occurrence of the first value in the prompt and negative prompt becomes ``value``."""
    search = values[0]
    if search not in request.prompt and search not in request.negative_prompt:
        raise AxisError(f"Prompt S/R did not find {search!r} in the prompt or the negative prompt")
    return {"prompt": request.prompt.replace(search, value),
            "negative_prompt": request.negative_prompt.replace(search, value)}


def prompt_order(request: "GenerationRequest", value: Any, values: list[Any]) -> dict[str, Any]:
    """Prompt order: the listed tokens, found in the prompt, are put back in the order ``value`` gives,
    the text between them kept where it was."""
    rest = request.prompt
    found = sorted((rest.find(token), token) for token in value)
    between: list[str] = []
    for _, token in found:
        at = rest.find(token)
        between.append(rest[:at])
        rest = rest[at + len(token):]
    return {"prompt": "".join(text + value[i] for i, text in enumerate(between)) + rest}


def styles(request: "GenerationRequest", value: Any, values: list[Any]) -> dict[str, Any]:
    return {"styles": [*request.styles, *[s for s in str(value).split(",") if s]]}


def size(request: "GenerationRequest", value: Any, values: list[Any]) -> dict[str, Any]:
    try:
        width, height = (int(part) for part in str(value).lower().split("x"))
    except ValueError:
        raise AxisError(f"invalid size {value!r}: use WIDTHxHEIGHT, e.g. 512x768") from None
    return {"width": width, "height": height}


def rng_source(request: "GenerationRequest", value: Any, values: list[Any]) -> dict[str, Any]:
    text = str(value).strip().upper()
    if text not in ("GPU", "CPU", "NV"):
        raise AxisError(f"invalid RNG source {value!r}: use GPU, CPU or NV")
    return {"randn_source": text}


def controlnet(name: str) -> Apply:
    def apply(request: "GenerationRequest", value: Any, values: list[Any]) -> dict[str, Any]:
        units = [unit for unit in request.controlnet_units if unit.enabled]
        if not units:
            raise AxisError(f"the ControlNet axis needs an enabled ControlNet unit in the request ({name})")
        return {"controlnet_units": [unit.model_copy(update={name: value}) if unit.enabled else unit
                                     for unit in request.controlnet_units]}
    return apply


def _hires(request: Any) -> bool:
    return getattr(request, "kind", "") != "txt2img" or bool(getattr(request, "enable_hr", False))


HIRES = (_hires, "on txt2img it applies to the hires fix: enable it (enable_hr)")
REFINER = (lambda request: request.refiner_checkpoint is not None, "it needs a refiner checkpoint")
VARIATION = (lambda request: request.subseed_strength > 0, "it needs a variation strength above 0")


def _nothing(request: "GenerationRequest", value: Any, values: list[Any]) -> dict[str, Any]:
    return {}


def _refused(label: str, kind: str, why: str, tab: str = "", cost: float = 0.0) -> Axis:
    return Axis(label, kind, None, tab=tab, cost=cost, refusal=why)


_SAMPLER_KNOBS = "the studio's samplers take no per-job sigma/eta overrides"
_SCHEDULE_KNOBS = "the studio's schedules take no per-job sigma/rho/beta overrides"

#: A1111 v1.10.1's ``axis_options`` in its order (both tabs), then the ControlNet axes
AXES: tuple[Axis, ...] = (
    Axis("Nothing", "nothing", _nothing, fmt="nothing"),
    Axis("Seed", "int", field("seed")),
    Axis("Var. seed", "int", field("subseed"), needs=VARIATION),
    Axis("Var. strength", "float", field("subseed_strength")),
    Axis("Steps", "int", field("steps")),
    Axis("Hires steps", "int", field("hr_second_pass_steps"), tab="txt2img", needs=HIRES),
    Axis("CFG Scale", "float", field("cfg_scale")),
    _refused("Image CFG Scale", "float", "it only applies to instruct-pix2pix models, which the studio does not run",
             tab="img2img"),
    Axis("Prompt S/R", "str", prompt_sr, fmt="raw"),
    Axis("Prompt order", "permutations", prompt_order, fmt="join"),
    Axis("Sampler", "str", field("sampler_name"), tab="txt2img", fmt="raw", choices="samplers"),
    Axis("Hires sampler", "str", field("hr_sampler_name"), tab="txt2img", choices="samplers", needs=HIRES),
    Axis("Sampler", "str", field("sampler_name"), tab="img2img", fmt="raw", choices="samplers"),
    Axis("Checkpoint name", "str", field("checkpoint"), fmt="path", cost=1.0, choices="checkpoints"),
    _refused("Negative Guidance minimum sigma", "float", "the studio does not skip the negative prompt by sigma"),
    _refused("Sigma Churn", "float", _SAMPLER_KNOBS),
    _refused("Sigma min", "float", _SAMPLER_KNOBS),
    _refused("Sigma max", "float", _SAMPLER_KNOBS),
    _refused("Sigma noise", "float", _SAMPLER_KNOBS),
    Axis("Schedule type", "str", field("scheduler"), choices="schedulers"),
    _refused("Schedule min sigma", "float", _SCHEDULE_KNOBS),
    _refused("Schedule max sigma", "float", _SCHEDULE_KNOBS),
    _refused("Schedule rho", "float", _SCHEDULE_KNOBS),
    _refused("Beta schedule alpha", "float", _SCHEDULE_KNOBS),
    _refused("Beta schedule beta", "float", _SCHEDULE_KNOBS),
    _refused("Eta", "float", _SAMPLER_KNOBS),
    Axis("Clip skip", "int", field("clip_skip")),
    Axis("Denoising", "float", field("denoising_strength"), needs=HIRES),
    Axis("Initial noise multiplier", "float", field("initial_noise_multiplier")),
    _refused("Extra noise", "float", "img2img extra noise is not implemented"),
    Axis("Hires upscaler", "str", field("hr_upscaler"), tab="txt2img", choices="hires_upscalers", needs=HIRES),
    _refused("Cond. Image Mask Weight", "float", "inpainting conditioning mask weight is not adjustable",
             tab="img2img"),
    Axis("VAE", "str", field("sd_vae"), cost=0.7, choices="vaes"),
    Axis("Styles", "str", styles, choices="styles"),
    _refused("UniPC Order", "int", "the UniPC order is fixed", cost=0.5),
    _refused("Face restore", "str", "face restoration is not available"),
    Axis("Token merging ratio", "float", field("token_merging_ratio")),
    Axis("Token merging ratio high-res", "float", field("token_merging_ratio_hr"), tab="txt2img", needs=HIRES),
    _refused("Token merging ratio high-res", "float", "img2img has no hires pass", tab="img2img"),  # A1111: both tabs
    _refused("Always discard next-to-last sigma", "str", _SAMPLER_KNOBS),
    _refused("SGM noise multiplier", "str", "the SGM noise multiplier is not available"),
    Axis("Refiner checkpoint", "str", field("refiner_checkpoint"), fmt="path", cost=1.0, choices="refiners"),
    Axis("Refiner switch at", "float", field("refiner_switch_at"), needs=REFINER),
    Axis("RNG source", "str", rng_source, fmt="raw"),
    _refused("FP8 mode", "str", "FP8 weight storage is not available", cost=0.9),
    Axis("Size", "str", size),
    Axis("[ControlNet] Weight", "float", controlnet("weight")),
    Axis("[ControlNet] Guidance Start", "float", controlnet("guidance_start")),
    Axis("[ControlNet] Guidance End", "float", controlnet("guidance_end")),
)


def axes_for(tab: str) -> list[Axis]:
    """The axes of ``tab`` in A1111's order: a type's position here is its A1111 index."""
    return [axis for axis in AXES if axis.tab in ("", tab)]


def axis_labels(tab: str) -> list[str]:
    return [axis.label for axis in axes_for(tab)]


def find_axis(name: str, tab: str) -> Axis:
    """The axis ``name`` (any case) of ``tab``; :class:`AxisError` naming the known ones."""
    wanted = str(name).strip().lower()
    for axis in axes_for(tab):
        if axis.label.lower() == wanted:
            return axis
    other = "img2img" if tab == "txt2img" else "txt2img"
    if any(axis.label.lower() == wanted for axis in axes_for(other)):
        raise AxisError(f"the X/Y/Z axis {name!r} is a {other} axis, not a {tab} one")
    raise AxisError(f"unknown X/Y/Z axis {name!r}; {tab} axes: {', '.join(axis_labels(tab))}")


def axis_index(index: Any, tab: str) -> str:
    """A1111's axis index on ``tab`` as the axis label."""
    labels = axis_labels(tab)
    try:
        number = int(index)
        if number != float(index):
            raise ValueError
    except (TypeError, ValueError):
        raise AxisError(f"X/Y/Z axis type {index!r} is neither an axis name nor an index 0-{len(labels) - 1}") from None
    if not 0 <= number < len(labels):
        raise AxisError(f"X/Y/Z axis index {number} is out of range: {tab} has axes 0-{len(labels) - 1}")
    return labels[number]


def all_labels() -> set[str]:
    return {axis.label.lower() for axis in AXES}
