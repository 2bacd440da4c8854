"""A1111's noise schedules ("Schedule type") and the CompVis discretisation they are built on.

A1111 samples SD models through k-diffusion's ``CompVisDenoiser``: the model's 1000 discrete noise
levels ``sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t)`` (``alpha_bar`` computed in float64 the way
the LDM code does, then stored as float32), a fractional timestep for any sigma found by linear
interpolation in log-sigma between neighbouring levels, and the schedule functions of A1111's
``sd_schedulers`` list. Reproducing A1111's picture needs exactly these numbers, so they are
implemented here from the published arithmetic instead of taken from a diffusers scheduler (whose
betas are computed in float32 and whose schedules space timesteps differently).

Every schedule returns ``n + 1`` float32 sigmas ending in 0 (KL Optimal, as in A1111, ends on
``sigma_min`` instead).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Final, Mapping

import numpy as np
import torch

#: A1111's Align Your Steps sigmas (NVIDIA's published 10-step schedules), SD 1.5 and SDXL.
AYS_SD15: Final[tuple[float, ...]] = (14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029)
AYS_SDXL: Final[tuple[float, ...]] = (14.615, 6.315, 3.771, 2.181, 1.342, 0.862, 0.555, 0.380, 0.234, 0.113, 0.029)

#: A1111's defaults for the Beta schedule (``beta_dist_alpha``/``beta_dist_beta`` options).
BETA_ALPHA: Final[float] = 0.6
BETA_BETA: Final[float] = 0.6


def ldm_alphas_cumprod(config: Mapping[str, Any]) -> torch.Tensor:
    """``alpha_bar`` as the LDM code registers it: betas and cumulative product in float64, then float32.

    ``scaled_linear`` is LDM's "linear" schedule (linear in sqrt(beta)).
    """
    count = int(config.get("num_train_timesteps", 1000))
    start, end = float(config.get("beta_start", 0.00085)), float(config.get("beta_end", 0.012))
    schedule = config.get("beta_schedule", "scaled_linear")
    trained = config.get("trained_betas")
    if trained is not None:
        betas = np.asarray(trained, dtype=np.float64)
    elif schedule == "scaled_linear":
        betas = (torch.linspace(start ** 0.5, end ** 0.5, count, dtype=torch.float64) ** 2).numpy()
    elif schedule == "linear":
        betas = torch.linspace(start, end, count, dtype=torch.float64).numpy()
    elif schedule == "squaredcos_cap_v2":
        steps = np.arange(count + 1, dtype=np.float64) / count
        alpha_bar = np.cos((steps + 0.008) / 1.008 * math.pi / 2) ** 2
        betas = np.minimum(1 - alpha_bar[1:] / alpha_bar[:-1], 0.999)
    else:
        raise ValueError(f"beta schedule {schedule!r} is not supported by the A1111 samplers")
    return torch.tensor(np.cumprod(1.0 - betas, axis=0), dtype=torch.float32)


@dataclass(frozen=True)
class Discretisation:
    """The model's discrete noise levels (ascending) and k-diffusion's sigma <-> timestep mapping."""

    sigmas: torch.Tensor
    log_sigmas: torch.Tensor
    alphas_cumprod: torch.Tensor

    @classmethod
    def from_alphas_cumprod(cls, alphas_cumprod: torch.Tensor) -> "Discretisation":
        sigmas = ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5
        return cls(sigmas=sigmas, log_sigmas=sigmas.log(), alphas_cumprod=alphas_cumprod)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "Discretisation":
        return cls.from_alphas_cumprod(ldm_alphas_cumprod(config))

    @property
    def sigma_min(self) -> float:
        return self.sigmas[0].item()

    @property
    def sigma_max(self) -> float:
        return self.sigmas[-1].item()

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        """Fractional timestep: linear interpolation in log-sigma between the two nearest levels."""
        log_sigma = sigma.log()
        dists = log_sigma - self.log_sigmas[:, None]
        low_idx = dists.ge(0).cumsum(dim=0).argmax(dim=0).clamp(max=self.log_sigmas.shape[0] - 2)
        high_idx = low_idx + 1
        low, high = self.log_sigmas[low_idx], self.log_sigmas[high_idx]
        w = ((low - log_sigma) / (low - high)).clamp(0, 1)
        return ((1 - w) * low_idx + w * high_idx).view(sigma.shape)

    def t_to_sigma(self, t: torch.Tensor) -> torch.Tensor:
        t = t.float()
        low_idx, high_idx, w = t.floor().long(), t.ceil().long(), t.frac()
        return ((1 - w) * self.log_sigmas[low_idx] + w * self.log_sigmas[high_idx]).exp()

    def uniform(self, n: int) -> torch.Tensor:
        """``n`` levels evenly spaced in timestep from the last to the first, then 0."""
        t = torch.linspace(len(self.sigmas) - 1, 0, n)
        return _append_zero(self.t_to_sigma(t))


@dataclass(frozen=True)
class LCMDiscretisation(Discretisation):
    """A1111's LCM discretisation: 50 of the model's levels (every 20th, ending at t=999), quantised.

    Timesteps are the nearest kept level's original timestep (``index * 20 + 19``).
    """

    skip: int = 20

    @classmethod
    def from_alphas_cumprod(cls, alphas_cumprod: torch.Tensor, original_steps: int = 50) -> "LCMDiscretisation":
        total = len(alphas_cumprod)
        skip = total // original_steps
        kept = torch.zeros(original_steps, dtype=torch.float32)
        for x in range(original_steps):
            kept[original_steps - 1 - x] = alphas_cumprod[total - 1 - x * skip]
        sigmas = ((1 - kept) / kept) ** 0.5
        return cls(sigmas=sigmas, log_sigmas=sigmas.log(), alphas_cumprod=alphas_cumprod, skip=skip)

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        dists = sigma.log() - self.log_sigmas[:, None]
        return dists.abs().argmin(dim=0).view(sigma.shape) * self.skip + (self.skip - 1)

    def t_to_sigma(self, t: torch.Tensor) -> torch.Tensor:
        index = torch.clamp(((t - (self.skip - 1)) / self.skip).float(), min=0, max=len(self.sigmas) - 1)
        return super().t_to_sigma(index)

    def uniform(self, n: int) -> torch.Tensor:
        start, end = self.sigma_to_t(self.sigmas[-1]), self.sigma_to_t(self.sigmas[0])
        return _append_zero(self.t_to_sigma(torch.linspace(start, end, n)))


def _append_zero(sigmas: torch.Tensor) -> torch.Tensor:
    return torch.cat([sigmas, sigmas.new_zeros([1])])


def _karras(n: int, disc: Discretisation, sdxl: bool) -> torch.Tensor:
    rho = 7.0
    ramp = torch.linspace(0, 1, n)
    min_inv_rho, max_inv_rho = disc.sigma_min ** (1 / rho), disc.sigma_max ** (1 / rho)
    return _append_zero((max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho)


def _exponential(n: int, disc: Discretisation, sdxl: bool) -> torch.Tensor:
    return _append_zero(torch.linspace(math.log(disc.sigma_max), math.log(disc.sigma_min), n).exp())


def _polyexponential(n: int, disc: Discretisation, sdxl: bool) -> torch.Tensor:
    rho = 1.0
    ramp = torch.linspace(1, 0, n) ** rho
    log_min, log_max = math.log(disc.sigma_min), math.log(disc.sigma_max)
    return _append_zero(torch.exp(ramp * (log_max - log_min) + log_min))


def _sgm_uniform(n: int, disc: Discretisation, sdxl: bool) -> torch.Tensor:
    start = disc.sigma_to_t(torch.tensor(disc.sigma_max))
    end = disc.sigma_to_t(torch.tensor(disc.sigma_min))
    levels = [disc.t_to_sigma(t) for t in torch.linspace(start, end, n + 1)[:-1]]
    return torch.FloatTensor([*levels, 0.0])


def _kl_optimal(n: int, disc: Discretisation, sdxl: bool) -> torch.Tensor:
    alpha_min = torch.arctan(torch.tensor(disc.sigma_min))
    alpha_max = torch.arctan(torch.tensor(disc.sigma_max))
    index = torch.arange(n + 1)
    return torch.tan(index / n * alpha_min + (1.0 - index / n) * alpha_max)


def _align_your_steps(n: int, disc: Discretisation, sdxl: bool) -> torch.Tensor:
    published = list(AYS_SDXL if sdxl else AYS_SD15)
    if n == len(published):
        return torch.FloatTensor([*published, 0.0])
    # log-linear interpolation of the published levels onto n points
    xs = np.linspace(0, 1, len(published))
    ys = np.log(published[::-1])
    interpolated = np.exp(np.interp(np.linspace(0, 1, n), xs, ys))[::-1].copy()
    return torch.FloatTensor(np.append(interpolated, [0.0]))


def _simple(n: int, disc: Discretisation, sdxl: bool) -> torch.Tensor:
    stride = len(disc.sigmas) / n
    levels = [float(disc.sigmas[-(1 + int(x * stride))]) for x in range(n)]
    return torch.FloatTensor([*levels, 0.0])


def _normal(n: int, disc: Discretisation, sdxl: bool) -> torch.Tensor:
    start = disc.sigma_to_t(torch.tensor(disc.sigma_max))
    end = disc.sigma_to_t(torch.tensor(disc.sigma_min))
    levels = [disc.t_to_sigma(t) for t in torch.linspace(start, end, n)]
    return torch.FloatTensor([*levels, 0.0])


def _ddim(n: int, disc: Discretisation, sdxl: bool) -> torch.Tensor:
    stride = max(len(disc.sigmas) // n, 1)
    levels = [float(disc.sigmas[x]) for x in range(1, len(disc.sigmas), stride)]
    return torch.FloatTensor([*levels[::-1], 0.0])


def _beta(n: int, disc: Discretisation, sdxl: bool) -> torch.Tensor:
    from scipy import stats

    quantiles = [stats.beta.ppf(x, BETA_ALPHA, BETA_BETA) for x in 1 - np.linspace(0, 1, n)]
    levels = [disc.sigma_min + (q * (disc.sigma_max - disc.sigma_min)) for q in quantiles]
    return torch.FloatTensor([*levels, 0.0])


def _uniform(n: int, disc: Discretisation, sdxl: bool) -> torch.Tensor:
    return disc.uniform(n)


ScheduleFunction = Callable[[int, Discretisation, bool], torch.Tensor]

#: Schedule name (``samplers.SCHEDULES``) -> sigma function; "automatic" is resolved by the caller.
SCHEDULE_FUNCTIONS: Final[Mapping[str, ScheduleFunction]] = {
    "uniform": _uniform,
    "karras": _karras,
    "exponential": _exponential,
    "polyexponential": _polyexponential,
    "sgm_uniform": _sgm_uniform,
    "kl_optimal": _kl_optimal,
    "align_your_steps": _align_your_steps,
    "simple": _simple,
    "normal": _normal,
    "ddim": _ddim,
    "beta": _beta,
}


def schedule_sigmas(schedule: str, steps: int, disc: Discretisation, *, sdxl: bool = False,
                    discard_penultimate: bool = False) -> torch.Tensor:
    """The sigmas A1111's ``KDiffusionSampler.get_sigmas`` gives for ``steps`` (float32, CPU).

    ``schedule`` is a concrete schedule name (``automatic`` already replaced by the sampler's
    default, or ``uniform`` when it has none). ``discard_penultimate`` (DPM2, DPM2 a, DPM++ 3M SDE)
    builds one step more and drops the next-to-last sigma, as A1111 does.
    """
    n = steps + 1 if discard_penultimate else steps
    sigmas = SCHEDULE_FUNCTIONS[schedule](n, disc, sdxl).float()
    if discard_penultimate:
        sigmas = torch.cat([sigmas[:-2], sigmas[-1:]])
    return sigmas
