"""Sampler and schedule registry: A1111 sampler names mapped onto diffusers schedulers.

One declarative table (`SAMPLERS`) lists every sampler with its A1111 name, aliases and
options, plus one diffusers mapping per prediction family:

* ``"diffusion"``: epsilon and v-prediction models (SD1.x, SD2.x, SDXL, ...);
* ``"flow"``: flow-matching models (FLUX, SD3).

Schedules (`SCHEDULES`) mirror A1111's ``modules/sd_schedulers.py`` list. ``automatic`` is the
sampler's A1111 default, or the model's own levels when the sampler has none; each schedule also
carries the diffusers constructor keyword arguments that approximate it (None: no equivalent).

Every sampler A1111 has runs SD-style ("diffusion") models through A1111's own arithmetic
(:class:`~modules.generation.sampling.a1111_scheduler.A1111Scheduler`: k-diffusion's samplers and A1111's
Restart, LCM, DDIM, DDIM CFG++, PLMS and UniPC; A1111's schedule functions; CompVis timesteps; each image's own
seed stream for sampler noise), so an A1111 infotext gives A1111's picture, and every schedule
applies to them. The diffusers mapping beside each is kept for zero-terminal-SNR models (which
A1111's discretisation cannot represent) and is the only mapping of DEIS; a schedule a diffusers
scheduler cannot honour runs as the model's own ("Automatic"), and the resolved sampler reports
the schedule actually used (DPM fast and adaptive choose their own levels: "Automatic" too).

Honest approximations of the diffusers schedules, since diffusers and k-diffusion differ:

* ``uniform`` and ``normal`` both map to ``timestep_spacing="linspace"``;
  ``sgm_uniform`` and ``simple`` to ``timestep_spacing="trailing"``;
  ``ddim`` to ``timestep_spacing="leading", steps_offset=1``.
* UniPC's diffusers mapping (zero-terminal-SNR models only) is diffusers' UniPC (bh1, order 3).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Literal, Mapping, Sequence

from modules.lazy_imports import diffusers_attr

if TYPE_CHECKING:  # diffusers is imported lazily: listing samplers must not cost a diffusers import
    from diffusers.schedulers.scheduling_utils import SchedulerMixin

Family = Literal["diffusion", "flow"]

#: Prediction types accepted by :meth:`ResolvedSampler.build`, with the family each belongs to.
PREDICTION_FAMILIES: Final[Mapping[str, Family]] = MappingProxyType(
    {
        "epsilon": "diffusion",
        "v_prediction": "diffusion",
        "flow": "flow",
        "flow_prediction": "flow",
    }
)

#: The three prediction types a sampler can declare support for.
PREDICTION_TYPES: Final[tuple[str, ...]] = ("epsilon", "v_prediction", "flow")

ZERO_SNR_FLAG: Final[str] = "rescale_betas_zero_snr"
_SIGMA_FLAGS: Final[tuple[str, ...]] = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas")


class SamplerError(ValueError):
    """Base class of the sampler registry's user-facing errors."""


class UnknownSamplerError(SamplerError):
    """The sampler name (or alias) is not in the registry."""


class UnknownScheduleError(SamplerError):
    """The schedule name is unknown, or known to A1111 but without a diffusers equivalent."""


class UnsupportedScheduleError(SamplerError):
    """The sampler's diffusers scheduler cannot honour the requested schedule."""


class SamplerNotSupportedError(SamplerError):
    """The sampler has no mapping for the model's prediction type."""


@dataclass(frozen=True)
class ScheduleSpec:
    """One A1111 schedule ("Schedule type") and the diffusers kwargs that realise it."""

    name: str
    label: str
    kwargs: Mapping[str, Any] | None
    aliases: tuple[str, ...] = ()
    default_rho: float = -1.0
    need_inner_model: bool = False

    @property
    def supported(self) -> bool:
        """Whether Atelier can realise this schedule: always (the A1111 samplers apply every one)."""
        return True


@dataclass(frozen=True)
class SchedulerMapping:
    """A diffusers scheduler class plus the fixed constructor overrides for one sampler."""

    class_name: str
    kwargs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    #: Restricts the schedules allowed; ``None`` derives them from the class signature.
    schedules: frozenset[str] | None = None
    #: Set when the mapping only approximates the A1111 sampler.
    note: str | None = None

    @property
    def is_a1111(self) -> bool:
        """Whether this is Atelier's A1111-arithmetic scheduler rather than a diffusers one."""
        return self.class_name == A1111_CLASS

    @property
    def cls(self) -> "type[SchedulerMixin]":
        """The scheduler class (imported on first use)."""
        if self.is_a1111:
            from modules.generation.sampling.a1111_scheduler import A1111Scheduler

            return A1111Scheduler
        return diffusers_attr(self.class_name)

    def init_params(self) -> frozenset[str]:
        """Constructor keyword names the scheduler class accepts."""
        return frozenset(inspect.signature(self.cls.__init__).parameters) - {"self", "kwargs"}

    def can_honour(self, schedule: ScheduleSpec) -> bool:
        """Whether this mapping can realise ``schedule`` exactly as declared."""
        if schedule.name == "automatic" or self.is_a1111:
            return True
        if schedule.kwargs is None:
            return False
        if self.schedules is not None and schedule.name not in self.schedules:
            return False
        return set(schedule.kwargs) <= self.init_params()


@dataclass(frozen=True)
class SamplerSpec:
    """One sampler: A1111 name, aliases, API options and diffusers mappings per family."""

    name: str
    aliases: tuple[str, ...]
    options: Mapping[str, str]
    diffusion: SchedulerMapping | None
    flow: SchedulerMapping | None = None
    #: The A1111 sampler program (``a1111_programs.PROGRAMS``) run for SD-style models.
    a1111: str | None = None
    #: True when the sampler picks its own noise levels and ignores the schedule (DPM fast/adaptive).
    schedule_free: bool = False

    @property
    def default_schedule(self) -> str | None:
        """A1111's default schedule for this sampler (``options["scheduler"]``), if any."""
        return self.options.get("scheduler")

    def mapping(self, family: Family) -> SchedulerMapping | None:
        """The scheduler mapping for a prediction family (the A1111 one for SD-style models)."""
        if family == "diffusion":
            return self.a1111_mapping if self.a1111 is not None else self.diffusion
        return self.flow

    @property
    def a1111_mapping(self) -> SchedulerMapping | None:
        """The A1111-arithmetic scheduler for this sampler, if it has one."""
        if self.a1111 is None:
            return None
        discard = self.options.get("discard_next_to_last_sigma") == "True"
        return SchedulerMapping(A1111_CLASS, _kw(sampler=self.a1111, discard_penultimate=discard))

    def supported_prediction_types(self) -> tuple[str, ...]:
        """Prediction types ("epsilon", "v_prediction", "flow") this sampler supports."""
        kinds: list[str] = []
        if self.diffusion is not None or self.a1111 is not None:
            kinds += ["epsilon", "v_prediction"]
        if self.flow is not None:
            kinds.append("flow")
        return tuple(kinds)


def _kw(**kwargs: Any) -> Mapping[str, Any]:
    return MappingProxyType(kwargs)


def _opts(**options: Any) -> Mapping[str, str]:
    """A1111 sampler options, stringified as the API's ``dict[str, str]`` model does."""
    return MappingProxyType({key: str(value) for key, value in options.items()})


A1111_CLASS: Final[str] = "A1111Scheduler"

_FLOW_SOLVER = _kw(use_flow_sigmas=True, prediction_type="flow_prediction")
_FLOW_SIGMAS_ONLY = frozenset({"automatic"})

#: A1111 schedules, in A1111's order. ``kwargs=None`` means no diffusers equivalent.
SCHEDULES: Final[tuple[ScheduleSpec, ...]] = (
    ScheduleSpec("automatic", "Automatic", _kw()),
    ScheduleSpec("uniform", "Uniform", _kw(timestep_spacing="linspace"), need_inner_model=True),
    ScheduleSpec("karras", "Karras", _kw(use_karras_sigmas=True), default_rho=7.0),
    ScheduleSpec("exponential", "Exponential", _kw(use_exponential_sigmas=True)),
    ScheduleSpec("polyexponential", "Polyexponential", None, default_rho=1.0),
    ScheduleSpec(
        "sgm_uniform", "SGM Uniform", _kw(timestep_spacing="trailing"),
        aliases=("SGMUniform",), need_inner_model=True,
    ),
    ScheduleSpec("kl_optimal", "KL Optimal", None),
    ScheduleSpec("align_your_steps", "Align Your Steps", None),
    ScheduleSpec("simple", "Simple", _kw(timestep_spacing="trailing"), need_inner_model=True),
    ScheduleSpec("normal", "Normal", _kw(timestep_spacing="linspace"), need_inner_model=True),
    ScheduleSpec("ddim", "DDIM", _kw(timestep_spacing="leading", steps_offset=1), need_inner_model=True),
    ScheduleSpec("beta", "Beta", _kw(use_beta_sigmas=True), need_inner_model=True),
)

#: Samplers in A1111's order (``samplers[0]`` is the default), then Atelier additions.
SAMPLERS: Final[tuple[SamplerSpec, ...]] = (
    SamplerSpec(
        "DPM++ 2M", ("k_dpmpp_2m",), _opts(scheduler="karras"),
        diffusion=SchedulerMapping("DPMSolverMultistepScheduler", _kw(algorithm_type="dpmsolver++", solver_order=2)),
        flow=SchedulerMapping(
            "DPMSolverMultistepScheduler",
            _kw(**_FLOW_SOLVER, algorithm_type="dpmsolver++", solver_order=2),
            schedules=_FLOW_SIGMAS_ONLY,
        ),
        a1111="dpmpp_2m",
    ),
    SamplerSpec(
        "DPM++ SDE", ("k_dpmpp_sde",), _opts(scheduler="karras", second_order=True, brownian_noise=True),
        diffusion=SchedulerMapping("DPMSolverSDEScheduler"),
        a1111="dpmpp_sde",
    ),
    SamplerSpec(
        "DPM++ 2M SDE", ("k_dpmpp_2m_sde",), _opts(scheduler="exponential", brownian_noise=True),
        diffusion=SchedulerMapping(
            "DPMSolverMultistepScheduler",
            _kw(algorithm_type="sde-dpmsolver++", solver_order=2, solver_type="midpoint"),
        ),
        a1111="dpmpp_2m_sde",
    ),
    SamplerSpec(
        "DPM++ 2M SDE Heun", ("k_dpmpp_2m_sde_heun",),
        _opts(scheduler="exponential", brownian_noise=True, solver_type="heun"),
        diffusion=SchedulerMapping(
            "DPMSolverMultistepScheduler",
            _kw(algorithm_type="sde-dpmsolver++", solver_order=2, solver_type="heun"),
        ),
        a1111="dpmpp_2m_sde_heun",
    ),
    SamplerSpec(
        "DPM++ 2S a", ("k_dpmpp_2s_a",), _opts(scheduler="karras", uses_ensd=True, second_order=True),
        diffusion=SchedulerMapping(
            "DPMSolverSinglestepScheduler",
            _kw(algorithm_type="sde-dpmsolver++", solver_order=2, lower_order_final=True),
            note="stochastic single-step DPM-Solver++(2S); not k-diffusion's ancestral step",
        ),
        a1111="dpmpp_2s_ancestral",
    ),
    SamplerSpec(
        "DPM++ 3M SDE", ("k_dpmpp_3m_sde",),
        _opts(scheduler="exponential", discard_next_to_last_sigma=True, brownian_noise=True),
        diffusion=SchedulerMapping(
            "DPMSolverMultistepScheduler", _kw(algorithm_type="sde-dpmsolver++", solver_order=3),
        ),
        a1111="dpmpp_3m_sde",
    ),
    SamplerSpec(
        "Euler a", ("k_euler_a", "k_euler_ancestral"), _opts(uses_ensd=True),
        diffusion=SchedulerMapping("EulerAncestralDiscreteScheduler"),
        a1111="euler_ancestral",
    ),
    SamplerSpec(
        "Euler", ("k_euler",), _opts(),
        diffusion=SchedulerMapping("EulerDiscreteScheduler"),
        flow=SchedulerMapping("FlowMatchEulerDiscreteScheduler"),
        a1111="euler",
    ),
    SamplerSpec("LMS", ("k_lms",), _opts(), diffusion=SchedulerMapping("LMSDiscreteScheduler"), a1111="lms"),
    SamplerSpec(
        "Heun", ("k_heun",), _opts(second_order=True),
        diffusion=SchedulerMapping("HeunDiscreteScheduler"),
        flow=SchedulerMapping("FlowMatchHeunDiscreteScheduler"),
        a1111="heun",
    ),
    SamplerSpec(
        "DPM2", ("k_dpm_2",), _opts(scheduler="karras", discard_next_to_last_sigma=True, second_order=True),
        diffusion=SchedulerMapping("KDPM2DiscreteScheduler"),
        a1111="dpm_2",
    ),
    SamplerSpec(
        "DPM2 a", ("k_dpm_2_a",),
        _opts(scheduler="karras", discard_next_to_last_sigma=True, uses_ensd=True, second_order=True),
        diffusion=SchedulerMapping("KDPM2AncestralDiscreteScheduler"),
        a1111="dpm_2_ancestral",
    ),
    # A1111's DPM-Solver-fast/adaptive and Restart; no diffusers equivalent.
    SamplerSpec("DPM fast", ("k_dpm_fast",), _opts(uses_ensd=True), diffusion=None, a1111="dpm_fast",
                schedule_free=True),
    SamplerSpec("DPM adaptive", ("k_dpm_ad",), _opts(uses_ensd=True), diffusion=None, a1111="dpm_adaptive",
                schedule_free=True),
    SamplerSpec("Restart", ("restart",), _opts(scheduler="karras", second_order=True), diffusion=None,
                a1111="restart"),
    SamplerSpec("DDIM", ("ddim",), _opts(), diffusion=SchedulerMapping("DDIMScheduler"), a1111="ddim"),
    SamplerSpec("DDIM CFG++", ("ddim_cfgpp",), _opts(), diffusion=None, a1111="ddim_cfgpp"),
    SamplerSpec(
        "PLMS", ("plms",), _opts(), diffusion=SchedulerMapping("PNDMScheduler", _kw(skip_prk_steps=True)),
        a1111="plms",
    ),
    SamplerSpec(
        "UniPC", ("unipc",), _opts(),
        # A1111's defaults: uni_pc_variant "bh1", uni_pc_order 3, lower order final; A1111's UniPC
        # stops at t = 1/N without a final denoise, hence sigma_min (diffusers' bh1 also gives NaN
        # on a final step to sigma 0).
        diffusion=SchedulerMapping(
            "UniPCMultistepScheduler",
            _kw(solver_type="bh1", solver_order=3, lower_order_final=True, final_sigmas_type="sigma_min"),
        ),
        flow=SchedulerMapping(
            "UniPCMultistepScheduler", _kw(**_FLOW_SOLVER, solver_type="bh2", solver_order=2),
            schedules=_FLOW_SIGMAS_ONLY,
        ),
        a1111="unipc",
    ),
    SamplerSpec(
        "LCM", ("k_lcm",), _opts(),
        diffusion=SchedulerMapping("LCMScheduler"),
        flow=SchedulerMapping("FlowMatchLCMScheduler"),
        a1111="lcm",
    ),
    # Not in A1111 (SD.Next offers it). No flow mapping: with flow sigmas diffusers' DEIS ends on
    # its last non-zero sigma (~0.14 for FLUX), leaving visible noise.
    SamplerSpec("DEIS", ("deis",), _opts(), diffusion=SchedulerMapping("DEISMultistepScheduler")),
)


def _build_lookup() -> Mapping[str, SamplerSpec]:
    table: dict[str, SamplerSpec] = {}
    for spec in SAMPLERS:
        for key in (spec.name, *spec.aliases):
            table[key.lower()] = spec
    return MappingProxyType(table)


def _build_schedule_lookup() -> Mapping[str, ScheduleSpec]:
    table: dict[str, ScheduleSpec] = {}
    for spec in SCHEDULES:
        for key in (spec.name, spec.label, *spec.aliases):
            table[key.lower()] = spec
    return MappingProxyType(table)


_SAMPLER_LOOKUP: Final[Mapping[str, SamplerSpec]] = _build_lookup()
_SCHEDULE_LOOKUP: Final[Mapping[str, ScheduleSpec]] = _build_schedule_lookup()
_SCHEDULE_BY_NAME: Final[Mapping[str, ScheduleSpec]] = MappingProxyType({s.name: s for s in SCHEDULES})


def prediction_family(prediction_type: str) -> Family:
    """Map a prediction type ("epsilon", "v_prediction", "flow"/"flow_prediction") to its family."""
    try:
        return PREDICTION_FAMILIES[prediction_type]
    except KeyError:
        valid = ", ".join(PREDICTION_TYPES)
        raise SamplerNotSupportedError(
            f"Unknown prediction type {prediction_type!r}; expected one of: {valid}"
        ) from None


def find_schedule(name: str | None) -> ScheduleSpec:
    """Look a schedule up by name, label or alias (case-insensitive); None/"" is automatic."""
    if name is None or not name.strip():
        return _SCHEDULE_BY_NAME["automatic"]
    spec = _SCHEDULE_LOOKUP.get(name.strip().lower())
    if spec is None:
        valid = ", ".join(s.label for s in SCHEDULES if s.supported)
        raise UnknownScheduleError(f"Unknown schedule type {name!r}; valid: {valid}")
    if not spec.supported:
        raise UnknownScheduleError(
            f"Schedule type {spec.label!r} has no diffusers equivalent and is not supported"
        )
    return spec


def _unknown_sampler(name: str) -> UnknownSamplerError:
    examples = ", ".join(s.name for s in SAMPLERS[:6])
    return UnknownSamplerError(f"Unknown sampler {name!r}; valid samplers include: {examples}, ...")


def _split_legacy_name(name: str) -> tuple[SamplerSpec, ScheduleSpec] | None:
    """Split ``"DPM++ 2M Karras"`` into sampler and schedule, like A1111's suffix matching."""
    lowered = name.lower()
    for schedule in SCHEDULES:
        for option in (schedule.label, schedule.name, *schedule.aliases):
            suffix = " " + option.lower()
            if lowered.endswith(suffix):
                sampler = _SAMPLER_LOOKUP.get(lowered[: -len(suffix)].strip())
                if sampler is not None:
                    return sampler, schedule
    return None


@dataclass(frozen=True)
class ResolvedSampler:
    """A sampler plus schedule, validated, ready to build a diffusers scheduler."""

    spec: SamplerSpec
    schedule: str

    @property
    def sampler_name(self) -> str:
        """Canonical A1111 sampler name, e.g. ``"DPM++ 2M"``."""
        return self.spec.name

    @property
    def schedule_label(self) -> str:
        """Infotext ``Schedule type`` for SD-style models (A1111 writes the concrete one, "Karras")."""
        return self.schedule_label_for("epsilon")

    @property
    def supported_prediction_types(self) -> tuple[str, ...]:
        """Prediction types this sampler can be built for."""
        return self.spec.supported_prediction_types()

    def effective_schedule(self, prediction_type: str = "epsilon") -> ScheduleSpec:
        """The concrete schedule applied for ``prediction_type`` (what the infotext reports).

        ``automatic`` means the sampler's A1111 default schedule when its scheduler can honour it,
        otherwise the model's own ("Automatic"). A schedule the scheduler cannot apply (a diffusers
        scheduler without that spacing, or DPM fast/adaptive, which choose their own levels) runs as
        "Automatic" and is reported so.
        """
        family = prediction_family(prediction_type)
        return self._schedule_for(self.spec.mapping(family), family)

    def _schedule_for(self, mapping: SchedulerMapping | None, family: Family = "diffusion") -> ScheduleSpec:
        """The schedule ``mapping`` runs; flow (FLUX) mappings keep refusing what they cannot honour."""
        automatic = _SCHEDULE_BY_NAME["automatic"]
        if self.spec.schedule_free:
            return automatic
        chosen = _SCHEDULE_BY_NAME[self.schedule]
        if chosen.name == "automatic" and self.spec.default_schedule is not None:
            default = _SCHEDULE_BY_NAME[self.spec.default_schedule]
            return default if mapping is None or mapping.can_honour(default) else chosen
        if mapping is None or mapping.can_honour(chosen) or family == "flow":
            return chosen
        return automatic

    def schedule_label_for(self, prediction_type: str) -> str:
        """Infotext ``Schedule type`` label for a given prediction type."""
        return self.effective_schedule(prediction_type).label

    def supports(self, prediction_type: str) -> bool:
        """Whether :meth:`build` can succeed for ``prediction_type`` with this schedule."""
        mapping = self.spec.mapping(prediction_family(prediction_type))
        return mapping is not None and mapping.can_honour(self.effective_schedule(prediction_type))

    def scheduler_class(self, prediction_type: str) -> type[SchedulerMixin]:
        """The scheduler class used for ``prediction_type``."""
        return self._mapping(prediction_type).cls

    def set_timesteps_params(self, prediction_type: str) -> frozenset[str]:
        """Keyword names the scheduler's ``set_timesteps`` accepts (e.g. ``sigmas``, ``mu``)."""
        params = inspect.signature(self.scheduler_class(prediction_type).set_timesteps).parameters
        return frozenset(params) - {"self", "_"}

    def overrides(self, base_scheduler_config: Mapping[str, Any], prediction_type: str,
                  mapping: SchedulerMapping | None = None) -> dict[str, Any]:
        """Constructor overrides applied on top of the model's scheduler config."""
        mapping = mapping or self._mapping(prediction_type)
        schedule = self._schedule_for(mapping, prediction_family(prediction_type))
        if mapping.is_a1111:
            return {**mapping.kwargs, "prediction_type": prediction_type, "schedule": schedule.name}
        accepted = mapping.init_params()
        overrides: dict[str, Any] = dict(mapping.kwargs)
        if prediction_family(prediction_type) == "diffusion" and "prediction_type" in accepted:
            overrides["prediction_type"] = prediction_type
        if overrides.get("use_flow_sigmas") and "flow_shift" not in base_scheduler_config:
            overrides["flow_shift"] = float(base_scheduler_config.get("shift", 1.0))
        if schedule.name != "automatic":
            overrides.update(_schedule_overrides(schedule, accepted))
        return overrides

    def build(self, base_scheduler_config: Mapping[str, Any], prediction_type: str, *,
              seeds: Sequence[int] | None = None, sdxl: bool = False, rng: str = "CPU") -> SchedulerMixin:
        """Build the scheduler from the model's own config.

        ``seeds`` (one per image of the batch) seed the A1111 samplers' noise streams, drawn from the
        random number source ``rng`` ("CPU", "GPU", "NV": :mod:`modules.generation.sampling.rng`); ``sdxl``
        selects SDXL's Align Your Steps levels. Zero-terminal-SNR models use the diffusers mapping.
        """
        mapping = self._mapping(prediction_type)
        if base_scheduler_config.get(ZERO_SNR_FLAG) and ZERO_SNR_FLAG not in mapping.init_params():
            fallback = self.spec.diffusion if mapping.is_a1111 else None
            if fallback is None or ZERO_SNR_FLAG not in fallback.init_params():
                family = prediction_family(prediction_type)
                valid = ", ".join(s.name for s in SAMPLERS if (m := s.diffusion if family == "diffusion"
                                                              else s.flow) is not None
                                  and ZERO_SNR_FLAG in m.init_params())
                raise SamplerNotSupportedError(
                    f"Sampler {self.sampler_name!r} cannot sample a zero-terminal-SNR model; use one of: {valid}"
                )
            mapping = fallback
        overrides = self.overrides(base_scheduler_config, prediction_type, mapping)
        if mapping.is_a1111:
            accepted = mapping.init_params()
            config = {k: v for k, v in base_scheduler_config.items() if k in accepted}
            return mapping.cls(**{**config, **overrides, "noise_seeds": list(seeds or []), "sdxl": sdxl,
                                  "noise_source": rng})
        return mapping.cls.from_config(dict(base_scheduler_config), **overrides)

    def _mapping(self, prediction_type: str) -> SchedulerMapping:
        family = prediction_family(prediction_type)
        mapping = self.spec.mapping(family)
        if mapping is None:
            valid = ", ".join(s.name for s in SAMPLERS if s.mapping(family) is not None)
            raise SamplerNotSupportedError(
                f"Sampler {self.sampler_name!r} does not support {prediction_type} models; use one of: {valid}"
            )
        schedule = self._schedule_for(mapping, family)
        if not mapping.can_honour(schedule):
            raise UnsupportedScheduleError(
                f"Sampler {self.sampler_name!r} cannot use schedule type {schedule.label!r} "
                f"for {prediction_type} models; valid: {', '.join(_honoured_labels(mapping))}"
            )
        return mapping


def _schedule_overrides(schedule: ScheduleSpec, accepted: frozenset[str]) -> dict[str, Any]:
    """Schedule kwargs plus resets of the other sigma flags the class accepts."""
    overrides = {flag: False for flag in _SIGMA_FLAGS if flag in accepted}
    overrides.update(schedule.kwargs or {})
    return overrides


def _honoured_labels(mapping: SchedulerMapping) -> list[str]:
    return [s.label for s in SCHEDULES if s.supported and mapping.can_honour(s)]


def resolve_sampler(name: str, scheduler: str | None = "automatic") -> ResolvedSampler:
    """Resolve a sampler name (exact, alias, case-insensitive or legacy combined) and schedule.

    Legacy names such as ``"DPM++ 2M Karras"`` are split by suffix-matching schedule labels,
    names and aliases; the suffix wins over ``scheduler``, as in A1111. A schedule equal to the
    sampler's default stays as given (``.schedule``); ``.schedule_label`` is always concrete.
    """
    if name is None or not name.strip():
        raise UnknownSamplerError("No sampler name given; valid samplers include: "
                                  + ", ".join(s.name for s in SAMPLERS[:6]) + ", ...")
    cleaned = " ".join(name.split())
    schedule = find_schedule(scheduler)
    sampler = _SAMPLER_LOOKUP.get(cleaned.lower())
    if sampler is None:
        split = _split_legacy_name(cleaned)
        if split is None:
            raise _unknown_sampler(name)
        sampler, schedule = split
        if not schedule.supported:
            find_schedule(schedule.name)  # raises the "not supported" error
    resolved = ResolvedSampler(spec=sampler, schedule=schedule.name)
    if not any(resolved.supports(kind) for kind in resolved.supported_prediction_types):
        mappings = [m for m in (sampler.diffusion, sampler.flow) if m is not None]
        valid = [s.label for s in SCHEDULES if s.supported and any(m.can_honour(s) for m in mappings)]
        raise UnsupportedScheduleError(
            f"Sampler {sampler.name!r} cannot use schedule type {schedule.label!r}; valid: {', '.join(valid)}"
        )
    return resolved


def default_sampler_name(prediction_type: str = "epsilon") -> str:
    """The default sampler for a prediction type: A1111's ``samplers[0]``, or Euler for flow."""
    family = prediction_family(prediction_type)
    return SAMPLERS[0].name if family == "diffusion" else "Euler"


def list_samplers(prediction_type: str | None = None) -> list[dict[str, Any]]:
    """Samplers in the A1111 API shape ``{"name", "aliases", "options"}``, optionally filtered."""
    family = prediction_family(prediction_type) if prediction_type is not None else None
    return [
        {"name": s.name, "aliases": list(s.aliases), "options": dict(s.options)}
        for s in SAMPLERS
        if family is None or s.mapping(family) is not None
    ]


def list_schedules() -> list[dict[str, Any]]:
    """Supported schedules in the A1111 API shape (``name, label, aliases, default_rho, need_inner_model``)."""
    return [
        {
            "name": s.name,
            "label": s.label,
            "aliases": list(s.aliases) or None,
            "default_rho": s.default_rho,
            "need_inner_model": s.need_inner_model,
        }
        for s in SCHEDULES
        if s.supported
    ]
