"""A diffusers-compatible scheduler that runs A1111's samplers with A1111's arithmetic.

diffusers pipelines own the denoising loop (prompt encoding, CFG, ControlNet, callbacks), so this
class plugs an A1111 sampler program (:mod:`modules.generation.sampling.a1111_programs`) into that loop
instead of replacing it: ``timesteps`` holds one entry per model evaluation (the fractional CompVis
timestep of the sigma the program wants, as A1111 feeds the model), ``scale_model_input`` applies
``c_in``, and ``step`` turns the CFG-combined model output into the denoised latents (``c_skip``,
``c_out``; epsilon or v-prediction), hands them to the program and returns the latents of its next
evaluation. CFG is combined by the pipeline on the model output; A1111 combines denoised latents,
which is the same affine combination, so only float rounding differs.

Noise continues each image's own seed stream (A1111's random number source: ``noise_source``, CPU, GPU or
NV) and Brownian trees are seeded per image, so neither depends on the ``generator`` the pipeline passes;
``add_noise`` (img2img's start, inpaint blending) uses each image's first draw of that source.

Evaluation counts vary (Heun-type steps, restarts): ``timesteps`` has one slot per model call.
DPM adaptive learns its levels as it goes: each next timestep is written into ``timesteps`` just
before the pipeline reads it, its slots are a generous bound, and :attr:`finished` tells the caller
when the program is done (the runner then stops the pipeline's loop; any further ``step`` returns the
result unchanged). img2img pipelines call ``set_begin_index`` with a step index: the program restarts
on the schedule's tail, which never needs more calls than the slots left.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Sequence

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin, SchedulerOutput

from modules.generation.sampling.a1111_noise import SamplerNoise, SeedStreams, ZeroNoise
from modules.generation.sampling.a1111_programs import (
    CFGPP_SCALE_DIVISOR,
    PROGRAMS,
    Eval,
    Program,
    ProgramSpec,
    TimestepPlan,
    UniPCPlan,
    VPSchedule,
)
from modules.generation.sampling.a1111_schedules import Discretisation, LCMDiscretisation, ldm_alphas_cumprod, schedule_sigmas

#: Attempts (3 model calls each) DPM adaptive may make before its result is taken as it stands.
ADAPTIVE_MAX_CALLS: Final[int] = 3000


@dataclass
class _Run:
    """State of the program while the pipeline's loop drives it."""

    program: Program | None
    pending: Eval | None
    slot: int
    first_level: torch.Tensor
    levels: Any                      # sigmas (sigma space), TimestepPlan or UniPCPlan
    finished: bool = False
    result: torch.Tensor | None = None


class A1111Scheduler(SchedulerMixin, ConfigMixin):
    """Runs one A1111 sampler (``sampler``, a key of ``PROGRAMS``) on one A1111 ``schedule``."""

    order = 1
    _compatibles: list[str] = []

    @register_to_config
    def __init__(self, num_train_timesteps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012,
                 beta_schedule: str = "scaled_linear", trained_betas: Any = None,
                 prediction_type: str = "epsilon", sampler: str = "euler", schedule: str = "automatic",
                 discard_penultimate: bool = False, sdxl: bool = False,
                 noise_seeds: Sequence[int] | None = None, noise_source: str = "CPU") -> None:
        if sampler not in PROGRAMS:
            raise ValueError(f"unknown A1111 sampler program {sampler!r}")
        if prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(f"A1111 samplers need an epsilon or v-prediction model, not {prediction_type!r}")
        alphas_cumprod = ldm_alphas_cumprod(self.config)
        self.spec: ProgramSpec = PROGRAMS[sampler]
        self.model_disc = Discretisation.from_alphas_cumprod(alphas_cumprod)
        self.disc = LCMDiscretisation.from_alphas_cumprod(alphas_cumprod) if self.spec.denoiser == "lcm" \
            else self.model_disc
        self.timesteps = torch.zeros(0)
        self.sigmas = torch.zeros(0)
        self.num_inference_steps: int | None = None
        self._levels: Any = None
        self._run: _Run | None = None
        self._init_sigma = torch.tensor(1.0)
        self._sigma_of_t: dict[float, torch.Tensor] = {}
        #: Whether ``set_begin_index`` receives a model-call index (SDXL ``denoising_start``) rather than a step.
        self.begin_counts_calls = False
        self._raw_output: torch.Tensor | None = None

    # --- plan ------------------------------------------------------------------------------------

    @property
    def uses_timesteps(self) -> bool:
        return self.spec.space == "timestep"

    def _schedule_name(self) -> str:
        name = self.config.schedule
        if self.spec.schedule_free or name == "automatic":
            return "uniform"
        return name

    def _sigmas(self, steps: int) -> torch.Tensor:
        return schedule_sigmas(self._schedule_name(), steps, self.disc, sdxl=self.config.sdxl,
                               discard_penultimate=self.config.discard_penultimate)

    def _timestep_plan(self, steps: int) -> TimestepPlan:
        """A1111's DDIM/PLMS times: ``range(0, 1000, 1000 // steps) + 1`` walked backwards
        (Automatic), or any other schedule's sigmas as fractional times."""
        if self.config.schedule == "automatic":
            full = torch.clip(torch.asarray(list(range(0, 1000, max(1000 // steps, 1)))) + 1, 0, 999)
            ac = self.model_disc.alphas_cumprod
            order = list(range(len(full) - 1, 0, -1))
            return TimestepPlan(
                timesteps=full[order].float(),
                timesteps_next=full[[max(i - 1, 0) for i in order]].float(),
                alphas=ac[full[order]],
                alphas_prev=ac[full[[i - 1 for i in order]]].to(torch.float64),
            )
        sigmas = self._sigmas(steps)
        times = self.model_disc.sigma_to_t(sigmas[:-1].clamp(min=1e-10))
        alphas = 1 / (1 + sigmas.double() ** 2)
        after = torch.cat([times[1:], times.new_zeros([1])]) if sigmas[-1] == 0 else \
            self.model_disc.sigma_to_t(sigmas[1:])
        return TimestepPlan(timesteps=times, timesteps_next=after, alphas=alphas[:-1].float(), alphas_prev=alphas[1:])

    def _unipc_plan(self, steps: int) -> UniPCPlan:
        """A1111's UniPC times: uniform in continuous time from 1 to 1/N over as many steps as A1111's
        timestep list has (Automatic), or any other schedule's sigmas as continuous times."""
        schedule = VPSchedule.from_alphas_cumprod(self.model_disc.alphas_cumprod)
        last = 1.0 / schedule.total
        if self.config.schedule == "automatic":
            count = len(range(0, 1000, max(1000 // steps, 1)))
            return UniPCPlan(times=torch.linspace(1.0, last, count + 1), schedule=schedule)
        sigmas = self._sigmas(steps)
        times = (self.model_disc.sigma_to_t(sigmas[sigmas > 0]) + 1) / schedule.total
        if sigmas[-1] == 0 and float(times[-1]) > last:
            times = torch.cat([times, torch.tensor([last])])
        return UniPCPlan(times=times.float(), schedule=schedule)

    def _plan(self, steps: int) -> Any:
        if self.spec.plan == "ddpm":
            return self._timestep_plan(steps)
        if self.spec.plan == "unipc":
            return self._unipc_plan(steps)
        return self._sigmas(steps)

    def _levels_from(self, begin: int) -> Any:
        plan = self._levels
        if isinstance(plan, TimestepPlan):
            return TimestepPlan(plan.timesteps[begin:], plan.timesteps_next[begin:], plan.alphas[begin:],
                                plan.alphas_prev[begin:])
        if isinstance(plan, UniPCPlan):
            return UniPCPlan(times=plan.times[begin:], schedule=plan.schedule, order=plan.order)
        return plan[begin:]

    def _first_level(self, levels: Any) -> torch.Tensor:
        if isinstance(levels, TimestepPlan):  # A1111's DDIM/PLMS make no model call for a single step
            return levels.timesteps[0] if len(levels.timesteps) else torch.tensor(0.0)
        if isinstance(levels, UniPCPlan):
            return levels.schedule.model_time(levels.times[:1])[0]
        return levels[0]

    def _trace(self, levels: Any) -> list[torch.Tensor]:
        """The evaluation levels of a program, traced with a zero model and zero noise."""
        probe = torch.zeros((1, 1, 1, 1))
        program = self.spec.start(probe, levels, ZeroNoise())
        evaluated: list[torch.Tensor] = []
        try:
            request = next(program)
            while True:
                evaluated.append(request.level)
                zero = torch.zeros_like(request.x)
                request = program.send((zero, zero) if self.wants_uncond else zero)
        except StopIteration:
            return evaluated

    def _model_time(self, level: torch.Tensor) -> torch.Tensor:
        return level.float() if self.uses_timesteps else self.disc.sigma_to_t(level.reshape(1)).float()[0]

    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None,
                      **_: Any) -> None:
        """Plan ``num_inference_steps`` steps: the schedule, then one timestep per model evaluation."""
        steps = int(num_inference_steps)
        self.num_inference_steps = steps
        self._levels = self._plan(steps)
        if not self.uses_timesteps:
            self.sigmas = self._levels
        evaluated = self._trace(self._levels)
        # one slot per model call (what ControlNet's step clock and the pipelines' progress count);
        # DPM adaptive gets room for as many calls as it may make
        slots = max(len(evaluated), ADAPTIVE_MAX_CALLS if self.spec.adaptive else 0)
        self.timesteps = torch.zeros(slots, dtype=torch.float32)
        self._write_plan(0, evaluated)
        self._start(0)

    def _write_plan(self, begin: int, evaluated: list[torch.Tensor]) -> None:
        self._sigma_of_t = {}
        self.timesteps[begin:] = 0.0
        for offset, level in enumerate(evaluated[: len(self.timesteps) - begin]):
            t = self._model_time(level)
            self.timesteps[begin + offset] = t
            self._sigma_of_t.setdefault(float(self.timesteps[begin + offset]), level)

    def _start(self, begin: int, slot: int = 0) -> None:
        levels = self._levels_from(begin)
        first = self._first_level(levels)
        self._run = _Run(program=None, pending=None, slot=slot, first_level=first, levels=levels)
        self._init_sigma = torch.tensor(1.0) if self.uses_timesteps else levels[0]

    def set_begin_index(self, begin_index: int = 0) -> None:
        """Start at step ``begin_index`` (img2img at ``strength``): the program runs on the schedule's tail.

        With :attr:`begin_counts_calls` (SDXL's ``denoising_start``, which counts model calls) the
        program starts at the first step whose calls all come at or after that call.

        diffusers' img2img pipelines pass ``steps - int(steps * strength)`` and iterate the timesteps
        from that slot on, so the program starts at that step's sigma. The runners give the pipeline the
        strength that makes this A1111's start (``sample_img2img``: ``int(strength * steps) + 1`` steps from
        level ``steps - t_enc - 1``; :func:`modules.generation.sampling.passes.pipeline_strength`).
        """
        if self._levels is None:
            raise RuntimeError("set_timesteps must be called before set_begin_index")
        step = self._step_from_call(begin_index) if self.begin_counts_calls else begin_index
        step = max(0, min(int(step), self._step_count()))  # past the last step: nothing left to run
        self._write_plan(begin_index, self._trace(self._levels_from(step)))
        self._start(step, slot=begin_index)

    def _step_count(self) -> int:
        plan = self._levels
        if isinstance(plan, TimestepPlan):
            return max(len(plan.timesteps), 1)
        if isinstance(plan, UniPCPlan):
            return max(len(plan.times) - 1, 1)
        return max(len(plan) - 1, 1)

    def _step_from_call(self, call: int) -> int:
        """The first step whose model calls all come at or after call ``call`` (SDXL's ``denoising_start``
        counts calls, not steps): the step from which the remaining calls suffice."""
        total = len(self._trace(self._levels))
        for step in range(self._step_count()):
            if total - len(self._trace(self._levels_from(step))) >= call:
                return step
        return self._step_count()

    # --- the pipeline's calls ------------------------------------------------------------------------

    @property
    def init_noise_sigma(self) -> torch.Tensor:
        """The noise level of pure-noise latents: the schedule's first sigma (1 for DDIM/PLMS)."""
        return self._init_sigma

    @property
    def finished(self) -> bool:
        """Whether the program has returned its result (any timesteps left are not needed)."""
        return self._run is not None and self._run.finished

    def _current_level(self) -> torch.Tensor:
        run = self._require_run()
        return run.pending.level if run.pending is not None else run.first_level

    def _require_run(self) -> _Run:
        if self._run is None:
            raise RuntimeError("set_timesteps must be called before sampling")
        return self._run

    def scale_model_input(self, sample: torch.Tensor, timestep: Any = None) -> torch.Tensor:
        if self.uses_timesteps or self.finished:
            return sample
        sigma = self._current_level()
        return sample * (1 / (sigma ** 2 + 1) ** 0.5)

    def _answer(self, model_output: torch.Tensor, request: Eval) -> Any:
        """The model output as the program needs it: denoised latents, or epsilon for timestep samplers
        (DDIM CFG++: the CFG++-guided and the unconditional epsilon)."""
        x, level = request.x, request.level
        v_prediction = self.config.prediction_type == "v_prediction"
        if self.uses_timesteps:
            def epsilon(output: torch.Tensor) -> torch.Tensor:
                if not v_prediction:
                    return output
                alpha = self._alpha_at(level)
                return alpha.sqrt() * output + (1 - alpha).sqrt() * x

            if self.spec.denoiser != "timestep_cfgpp":
                return epsilon(model_output)
            uncond = self._take_uncond(model_output)
            # the pipeline guided with its CFG scale g: output = u + g (c - u); CFG++ wants u + g/12.5 (c - u)
            guided = uncond + (model_output - uncond) / CFGPP_SCALE_DIVISOR
            return epsilon(guided), epsilon(uncond)
        sigma = level
        if v_prediction and self.spec.denoiser != "lcm":
            c_skip = 1 / (sigma ** 2 + 1)
            c_out = -sigma / (sigma ** 2 + 1) ** 0.5
            return model_output * c_out + x * c_skip
        denoised = x + model_output * -sigma
        if self.spec.denoiser == "lcm":
            scaled = self.disc.sigma_to_t(sigma) * 10.0
            c_skip = 0.5 ** 2 / (scaled ** 2 + 0.5 ** 2)
            c_out = scaled / (scaled ** 2 + 0.5 ** 2) ** 0.5
            return c_out * denoised + c_skip * x
        return denoised

    @property
    def wants_uncond(self) -> bool:
        """Whether the runner should hand over the unconditional model output (DDIM CFG++)."""
        return self.spec.denoiser == "timestep_cfgpp"

    def receive_model_output(self, output: torch.Tensor) -> None:
        """The UNet's raw output batch of one call (``[uncond, cond]`` when CFG is on)."""
        self._raw_output = output

    def _take_uncond(self, guided: torch.Tensor) -> torch.Tensor:
        raw, self._raw_output = self._raw_output, None
        if raw is None or raw.shape[0] != 2 * guided.shape[0]:
            return guided  # no CFG batch (CFG scale <= 1): the output is the unconditional prediction
        return raw[: guided.shape[0]].to(guided.dtype)

    def _alpha_at(self, level: torch.Tensor) -> torch.Tensor:
        plan = self._require_run().levels
        if isinstance(plan, TimestepPlan):
            matches = (plan.timesteps == level).nonzero()
            if len(matches):
                return plan.alphas[int(matches[0])]
        return self.model_disc.alphas_cumprod[int(level)]

    def _noise_alpha_at(self, level: torch.Tensor) -> torch.Tensor:
        """``alpha_bar`` to noise clean latents to: UniPC's own continuous-time level for UniPC."""
        plan = self._require_run().levels
        if isinstance(plan, UniPCPlan):
            continuous = level.reshape(1) / 1000.0 + 1.0 / plan.schedule.total
            return plan.schedule.alpha(continuous)[0] ** 2
        return self._alpha_at(level)

    def step(self, model_output: torch.Tensor, timestep: Any, sample: torch.Tensor,
             generator: Any = None, return_dict: bool = True, **_: Any) -> SchedulerOutput | tuple[torch.Tensor]:
        """Answer the program's pending evaluation; return the latents of its next one (or its result)."""
        run = self._require_run()
        if run.finished:
            out = run.result if run.result is not None else sample
            return SchedulerOutput(prev_sample=out) if return_dict else (out,)
        if run.program is None:
            noise = SamplerNoise(self.config.noise_seeds or [0] * sample.shape[0],
                                 self._brownian_range(run) if self.spec.brownian else None,
                                 source=self.config.noise_source)
            noise.bind(sample)
            run.program = self.spec.start(sample, run.levels, noise)
            try:
                run.pending = next(run.program)
            except StopIteration as stop:  # nothing to evaluate: the program's result is its input
                run.finished, run.result = True, stop.value
                return SchedulerOutput(prev_sample=stop.value) if return_dict else (stop.value,)
        answer = self._answer(model_output.to(run.pending.x.dtype), run.pending)
        try:
            run.pending = run.program.send(answer)
            out = run.pending.x
            run.slot += 1
            if run.slot < len(self.timesteps):
                self.timesteps[run.slot] = self._model_time(run.pending.level)
        except StopIteration as stop:
            run.finished, run.result, run.pending = True, stop.value, None
            out = stop.value
        return SchedulerOutput(prev_sample=out) if return_dict else (out,)

    def _brownian_range(self, run: _Run) -> tuple[torch.Tensor, torch.Tensor]:
        sigmas = self._levels
        return sigmas[sigmas > 0].min(), sigmas.max()

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor,
                  timesteps: torch.Tensor) -> torch.Tensor:
        """Noise clean latents to the level of ``timesteps`` (img2img start, inpaint blending)."""
        if self.finished:
            return original_samples
        seeds = list(self.config.noise_seeds or [])
        if self.config.noise_source != "CPU" and len(seeds) == noise.shape[0]:
            # the pipeline drew ``noise`` from CPU generators; A1111 uses each image's first draw of its source
            noise = SeedStreams(seeds, source=self.config.noise_source).first_draws(noise)
        if torch.is_tensor(timesteps):  # an img2img tail with no model call leaves no timestep to read
            t = timesteps.reshape(-1)[0] if timesteps.numel() else self._current_level()
        else:
            t = torch.tensor(float(timesteps))
        if self.uses_timesteps:
            alpha = self._noise_alpha_at(t).to(original_samples.dtype)
            return original_samples * alpha.sqrt() + noise * (1 - alpha).sqrt()
        sigma = self._sigma_of_t.get(float(t))
        if sigma is None:
            sigma = self.disc.t_to_sigma(t.reshape(1))[0]
        return original_samples + noise * sigma.to(original_samples.dtype)

    def __len__(self) -> int:
        return int(self.config.num_train_timesteps)
