"""A1111's samplers as step-by-step programs (the published k-diffusion / A1111 arithmetic).

Each sampler is written as a Python generator: it yields an :class:`Eval` (the latents to denoise and
the noise level, or DDPM timestep, to denoise them at), receives the model's answer (the denoised
latents for sigma-space samplers, the noise prediction for timestep samplers) and finally returns the
sampled latents. Written this way a sampler can be driven one model call at a time by a diffusers
pipeline's own loop (:mod:`modules.generation.a1111_scheduler`), while its arithmetic stays exactly
that of the sampling functions A1111 runs, so the same seed gives A1111's picture.

Sigma-space programs follow k-diffusion 0.1.1 (Karras et al. 2022; DPM-Solver; DPM-Solver++) and
A1111's own Restart and LCM samplers; timestep programs follow A1111's DDIM, DDIM CFG++ and PLMS and the UniPC
(Zhao et al. 2023, bh1 variant, order 3) A1111 runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Final, Generator, Literal, Mapping

import torch

from modules.generation.a1111_noise import NoiseSource


@dataclass(frozen=True)
class Eval:
    """One model evaluation requested by a program: latents ``x`` at ``level``.

    ``level`` is a sigma (0-dim tensor) for sigma-space programs and a model timestep for
    timestep programs.
    """

    x: torch.Tensor
    level: torch.Tensor


Program = Generator[Eval, torch.Tensor, torch.Tensor]
Space = Literal["sigma", "timestep"]

#: A1111's defaults: ``eta_ancestral`` 1.0 (ancestral and SDE samplers, DPM fast/adaptive), ``s_noise`` 1.0.
ETA: Final[float] = 1.0
S_NOISE: Final[float] = 1.0


def _to_d(x: torch.Tensor, sigma: torch.Tensor, denoised: torch.Tensor) -> torch.Tensor:
    """The Karras ODE derivative dx/dsigma."""
    return (x - denoised) / sigma


def _ancestral_step(sigma_from: torch.Tensor, sigma_to: torch.Tensor,
                    eta: float = ETA) -> tuple[torch.Tensor, torch.Tensor | float]:
    """Split a step into a deterministic part down to ``sigma_down`` and fresh noise ``sigma_up``."""
    if not eta:
        return sigma_to, 0.0
    sigma_up = min(sigma_to, eta * (sigma_to ** 2 * (sigma_from ** 2 - sigma_to ** 2) / sigma_from ** 2) ** 0.5)
    sigma_down = (sigma_to ** 2 - sigma_up ** 2) ** 0.5
    return sigma_down, sigma_up


def _sigma_of(t: torch.Tensor) -> torch.Tensor:
    return t.neg().exp()


def _t_of(sigma: torch.Tensor) -> torch.Tensor:
    return sigma.log().neg()


# --- first-order and Heun-type samplers --------------------------------------------------------


def euler(x: torch.Tensor, sigmas: torch.Tensor, noise: NoiseSource) -> Program:
    for i in range(len(sigmas) - 1):
        denoised = yield Eval(x, sigmas[i])
        x = x + _to_d(x, sigmas[i], denoised) * (sigmas[i + 1] - sigmas[i])
    return x


def euler_ancestral(x: torch.Tensor, sigmas: torch.Tensor, noise: NoiseSource) -> Program:
    for i in range(len(sigmas) - 1):
        denoised = yield Eval(x, sigmas[i])
        sigma_down, sigma_up = _ancestral_step(sigmas[i], sigmas[i + 1])
        x = x + _to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
        if sigmas[i + 1] > 0:
            x = x + noise.randn_like(x) * S_NOISE * sigma_up
    return x


def heun(x: torch.Tensor, sigmas: torch.Tensor, noise: NoiseSource) -> Program:
    for i in range(len(sigmas) - 1):
        denoised = yield Eval(x, sigmas[i])
        d = _to_d(x, sigmas[i], denoised)
        dt = sigmas[i + 1] - sigmas[i]
        if sigmas[i + 1] == 0:
            x = x + d * dt
            continue
        x_2 = x + d * dt
        denoised_2 = yield Eval(x_2, sigmas[i + 1])
        d_2 = _to_d(x_2, sigmas[i + 1], denoised_2)
        x = x + (d + d_2) / 2 * dt
    return x


def dpm_2(x: torch.Tensor, sigmas: torch.Tensor, noise: NoiseSource) -> Program:
    for i in range(len(sigmas) - 1):
        denoised = yield Eval(x, sigmas[i])
        d = _to_d(x, sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = x + d * (sigmas[i + 1] - sigmas[i])
            continue
        sigma_mid = sigmas[i].log().lerp(sigmas[i + 1].log(), 0.5).exp()
        x_2 = x + d * (sigma_mid - sigmas[i])
        denoised_2 = yield Eval(x_2, sigma_mid)
        x = x + _to_d(x_2, sigma_mid, denoised_2) * (sigmas[i + 1] - sigmas[i])
    return x


def dpm_2_ancestral(x: torch.Tensor, sigmas: torch.Tensor, noise: NoiseSource) -> Program:
    for i in range(len(sigmas) - 1):
        denoised = yield Eval(x, sigmas[i])
        sigma_down, sigma_up = _ancestral_step(sigmas[i], sigmas[i + 1])
        d = _to_d(x, sigmas[i], denoised)
        if sigma_down == 0:
            x = x + d * (sigma_down - sigmas[i])
            continue
        sigma_mid = sigmas[i].log().lerp(sigma_down.log(), 0.5).exp()
        x_2 = x + d * (sigma_mid - sigmas[i])
        denoised_2 = yield Eval(x_2, sigma_mid)
        x = x + _to_d(x_2, sigma_mid, denoised_2) * (sigma_down - sigmas[i])
        x = x + noise.randn_like(x) * S_NOISE * sigma_up
    return x


def _lms_coefficient(order: int, levels: list[float], i: int, j: int) -> float:
    """Integral over [levels[i], levels[i+1]] of the j-th Lagrange basis polynomial on past levels."""
    from scipy import integrate

    def basis(tau: float) -> float:
        product = 1.0
        for k in range(order):
            if k != j:
                product *= (tau - levels[i - k]) / (levels[i - j] - levels[i - k])
        return product

    return integrate.quad(basis, levels[i], levels[i + 1], epsrel=1e-4)[0]


def lms(x: torch.Tensor, sigmas: torch.Tensor, noise: NoiseSource, order: int = 4) -> Program:
    levels = sigmas.detach().cpu().numpy()
    history: list[torch.Tensor] = []
    for i in range(len(sigmas) - 1):
        denoised = yield Eval(x, sigmas[i])
        history.append(_to_d(x, sigmas[i], denoised))
        if len(history) > order:
            history.pop(0)
        current = min(i + 1, order)
        coefficients = [_lms_coefficient(current, levels, i, j) for j in range(current)]
        x = x + sum(c * d for c, d in zip(coefficients, reversed(history)))
    return x


# --- DPM-Solver++ family ----------------------------------------------------------------------


def dpmpp_2s_ancestral(x: torch.Tensor, sigmas: torch.Tensor, noise: NoiseSource) -> Program:
    for i in range(len(sigmas) - 1):
        denoised = yield Eval(x, sigmas[i])
        sigma_down, sigma_up = _ancestral_step(sigmas[i], sigmas[i + 1])
        if sigma_down == 0:
            x = x + _to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
        else:
            t, t_next = _t_of(sigmas[i]), _t_of(sigma_down)
            h = t_next - t
            s = t + 0.5 * h
            x_2 = (_sigma_of(s) / _sigma_of(t)) * x - (-h * 0.5).expm1() * denoised
            denoised_2 = yield Eval(x_2, _sigma_of(s))
            x = (_sigma_of(t_next) / _sigma_of(t)) * x - (-h).expm1() * denoised_2
        if sigmas[i + 1] > 0:
            x = x + noise.randn_like(x) * S_NOISE * sigma_up
    return x


def dpmpp_2m(x: torch.Tensor, sigmas: torch.Tensor, noise: NoiseSource) -> Program:
    previous: torch.Tensor | None = None
    for i in range(len(sigmas) - 1):
        denoised = yield Eval(x, sigmas[i])
        t, t_next = _t_of(sigmas[i]), _t_of(sigmas[i + 1])
        h = t_next - t
        if previous is None or sigmas[i + 1] == 0:
            x = (_sigma_of(t_next) / _sigma_of(t)) * x - (-h).expm1() * denoised
        else:
            r = (t - _t_of(sigmas[i - 1])) / h
            blended = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * previous
            x = (_sigma_of(t_next) / _sigma_of(t)) * x - (-h).expm1() * blended
        previous = denoised
    return x


def dpmpp_sde(x: torch.Tensor, sigmas: torch.Tensor, noise: NoiseSource, r: float = 0.5) -> Program:
    for i in range(len(sigmas) - 1):
        denoised = yield Eval(x, sigmas[i])
        if sigmas[i + 1] == 0:
            x = x + _to_d(x, sigmas[i], denoised) * (sigmas[i + 1] - sigmas[i])
            continue
        t, t_next = _t_of(sigmas[i]), _t_of(sigmas[i + 1])
        h = t_next - t
        s = t + h * r
        fac = 1 / (2 * r)
        # first stage: to the intermediate level s
        sd, su = _ancestral_step(_sigma_of(t), _sigma_of(s))
        s_ = _t_of(sd)
        x_2 = (_sigma_of(s_) / _sigma_of(t)) * x - (t - s_).expm1() * denoised
        x_2 = x_2 + noise.brownian(_sigma_of(t), _sigma_of(s)) * S_NOISE * su
        denoised_2 = yield Eval(x_2, _sigma_of(s))
        # second stage: the full step with the blended estimate
        sd, su = _ancestral_step(_sigma_of(t), _sigma_of(t_next))
        t_next_ = _t_of(sd)
        blended = (1 - fac) * denoised + fac * denoised_2
        x = (_sigma_of(t_next_) / _sigma_of(t)) * x - (t - t_next_).expm1() * blended
        x = x + noise.brownian(_sigma_of(t), _sigma_of(t_next)) * S_NOISE * su
    return x


def _dpmpp_2m_sde(x: torch.Tensor, sigmas: torch.Tensor, noise: NoiseSource, solver: str) -> Program:
    eta = ETA
    previous: torch.Tensor | None = None
    h_last: torch.Tensor | None = None
    h: torch.Tensor | None = None
    for i in range(len(sigmas) - 1):
        denoised = yield Eval(x, sigmas[i])
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            t, s = -sigmas[i].log(), -sigmas[i + 1].log()
            h = s - t
            eta_h = eta * h
            x = sigmas[i + 1] / sigmas[i] * (-eta_h).exp() * x + (-h - eta_h).expm1().neg() * denoised
            if previous is not None:
                r = h_last / h
                if solver == "heun":
                    x = x + ((-h - eta_h).expm1().neg() / (-h - eta_h) + 1) * (1 / r) * (denoised - previous)
                else:
                    x = x + 0.5 * (-h - eta_h).expm1().neg() * (1 / r) * (denoised - previous)
            if eta:
                x = x + noise.brownian(sigmas[i], sigmas[i + 1]) * sigmas[i + 1] \
                    * (-2 * eta_h).expm1().neg().sqrt() * S_NOISE
        previous = denoised
        h_last = h
    return x


def dpmpp_2m_sde(x: torch.Tensor, sigmas: torch.Tensor, noise: NoiseSource) -> Program:
    return (yield from _dpmpp_2m_sde(x, sigmas, noise, "midpoint"))


def dpmpp_2m_sde_heun(x: torch.Tensor, sigmas: torch.Tensor, noise: NoiseSource) -> Program:
    return (yield from _dpmpp_2m_sde(x, sigmas, noise, "heun"))


def dpmpp_3m_sde(x: torch.Tensor, sigmas: torch.Tensor, noise: NoiseSource) -> Program:
    eta = ETA
    denoised_1: torch.Tensor | None = None
    denoised_2: torch.Tensor | None = None
    h: torch.Tensor | None = None
    h_1: torch.Tensor | None = None
    h_2: torch.Tensor | None = None
    for i in range(len(sigmas) - 1):
        denoised = yield Eval(x, sigmas[i])
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            t, s = -sigmas[i].log(), -sigmas[i + 1].log()
            h = s - t
            h_eta = h * (eta + 1)
            x = torch.exp(-h_eta) * x + (-h_eta).expm1().neg() * denoised
            if h_2 is not None:
                r0, r1 = h_1 / h, h_2 / h
                d1_0 = (denoised - denoised_1) / r0
                d1_1 = (denoised_1 - denoised_2) / r1
                d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                phi_2 = h_eta.neg().expm1() / h_eta + 1
                phi_3 = phi_2 / h_eta - 0.5
                x = x + phi_2 * d1 - phi_3 * d2
            elif h_1 is not None:
                d = (denoised - denoised_1) / (h_1 / h)
                x = x + (h_eta.neg().expm1() / h_eta + 1) * d
            if eta:
                x = x + noise.brownian(sigmas[i], sigmas[i + 1]) * sigmas[i + 1] \
                    * (-2 * h * eta).expm1().neg().sqrt() * S_NOISE
        denoised_1, denoised_2 = denoised, denoised_1
        h_1, h_2 = h, h_1
    return x


# --- DPM-Solver (fast and adaptive) ------------------------------------------------------------


class _Eps:
    """DPM-Solver's noise predictions at log-SNR times, cached within one step by key."""

    def __init__(self) -> None:
        self.cache: dict[str, torch.Tensor] = {}

    def get(self, key: str, x: torch.Tensor, t: torch.Tensor) -> Program:
        if key in self.cache:
            return self.cache[key]
        denoised = yield Eval(x, _sigma_of(t))
        eps = (x - denoised) / _sigma_of(t)
        self.cache[key] = eps
        return eps


def _dpm_solver_1(x: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor, eps: _Eps) -> Program:
    h = t_next - t
    e = yield from eps.get("eps", x, t)
    return x - _sigma_of(t_next) * h.expm1() * e


def _dpm_solver_2(x: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor, eps: _Eps, r1: float = 1 / 2) -> Program:
    h = t_next - t
    e = yield from eps.get("eps", x, t)
    s1 = t + r1 * h
    u1 = x - _sigma_of(s1) * (r1 * h).expm1() * e
    e_r1 = yield from eps.get("eps_r1", u1, s1)
    return x - _sigma_of(t_next) * h.expm1() * e - _sigma_of(t_next) / (2 * r1) * h.expm1() * (e_r1 - e)


def _dpm_solver_3(x: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor, eps: _Eps,
                  r1: float = 1 / 3, r2: float = 2 / 3) -> Program:
    h = t_next - t
    e = yield from eps.get("eps", x, t)
    s1, s2 = t + r1 * h, t + r2 * h
    u1 = x - _sigma_of(s1) * (r1 * h).expm1() * e
    e_r1 = yield from eps.get("eps_r1", u1, s1)
    u2 = x - _sigma_of(s2) * (r2 * h).expm1() * e \
        - _sigma_of(s2) * (r2 / r1) * ((r2 * h).expm1() / (r2 * h) - 1) * (e_r1 - e)
    e_r2 = yield from eps.get("eps_r2", u2, s2)
    return x - _sigma_of(t_next) * h.expm1() * e - _sigma_of(t_next) / r2 * (h.expm1() / h - 1) * (e_r2 - e)


_DPM_STEPS: Final[Mapping[int, Callable[..., Program]]] = {1: _dpm_solver_1, 2: _dpm_solver_2, 3: _dpm_solver_3}


def dpm_fast(x: torch.Tensor, sigma_min: float, sigma_max: float, nfe: int, noise: NoiseSource) -> Program:
    """DPM-Solver-fast: ``nfe`` model calls in third-order steps evenly spaced in log-sigma."""
    eta = ETA
    t_start, t_end = _t_of(torch.tensor(sigma_max)), _t_of(torch.tensor(sigma_min))
    m = math.floor(nfe / 3) + 1
    ts = torch.linspace(t_start, t_end, m + 1, device=x.device)
    orders = [3] * (m - 2) + [2, 1] if nfe % 3 == 0 else [3] * (m - 1) + [nfe % 3]
    for i, order in enumerate(orders):
        eps = _Eps()
        t, t_next = ts[i], ts[i + 1]
        if eta:
            sd, su = _ancestral_step(_sigma_of(t), _sigma_of(t_next), eta)
            t_next_ = torch.minimum(t_end, _t_of(sd))
            su = (_sigma_of(t_next) ** 2 - _sigma_of(t_next_) ** 2) ** 0.5
        else:
            t_next_, su = t_next, 0.0
        yield from eps.get("eps", x, t)
        x = yield from _DPM_STEPS[order](x, t, t_next_, eps)
        x = x + su * S_NOISE * noise.randn_like(x)
    return x


class _StepSizeController:
    """DPM-Solver's PID step-size controller (here with its integral term only, as A1111 runs it)."""

    def __init__(self, h: float, order: float, pcoeff: float = 0.0, icoeff: float = 1.0, dcoeff: float = 0.0,
                 accept_safety: float = 0.81, eps: float = 1e-8) -> None:
        self.h = h
        self.b1 = (pcoeff + icoeff + dcoeff) / order
        self.b2 = -(pcoeff + 2 * dcoeff) / order
        self.b3 = dcoeff / order
        self.accept_safety = accept_safety
        self.eps = eps
        self.errs: list[float] = []

    def propose(self, error: torch.Tensor) -> bool:
        inv_error = 1 / (float(error) + self.eps)
        if not self.errs:
            self.errs = [inv_error, inv_error, inv_error]
        self.errs[0] = inv_error
        factor = self.errs[0] ** self.b1 * self.errs[1] ** self.b2 * self.errs[2] ** self.b3
        factor = 1 + math.atan(factor - 1)
        accept = factor >= self.accept_safety
        if accept:
            self.errs[2] = self.errs[1]
            self.errs[1] = self.errs[0]
        self.h *= factor
        return accept


def dpm_adaptive(x: torch.Tensor, sigma_min: float, sigma_max: float, noise: NoiseSource,
                 rtol: float = 0.05, atol: float = 0.0078, h_init: float = 0.05) -> Program:
    """DPM-Solver-23 with adaptive step size (3 model calls per attempted step)."""
    eta = ETA
    t_start, t_end = _t_of(torch.tensor(sigma_max)), _t_of(torch.tensor(sigma_min))
    atol_t, rtol_t = torch.tensor(atol), torch.tensor(rtol)
    s = t_start
    x_prev = x
    controller = _StepSizeController(abs(h_init), 1.5 if eta else 3)
    while s < t_end - 1e-5:
        eps = _Eps()
        t = torch.minimum(t_end, s + controller.h)
        if eta:
            sd, su = _ancestral_step(_sigma_of(s), _sigma_of(t), eta)
            t_ = torch.minimum(t_end, _t_of(sd))
            su = (_sigma_of(t) ** 2 - _sigma_of(t_) ** 2) ** 0.5
        else:
            t_, su = t, 0.0
        yield from eps.get("eps", x, s)
        x_low = yield from _dpm_solver_2(x, s, t_, eps, r1=1 / 3)
        x_high = yield from _dpm_solver_3(x, s, t_, eps)
        delta = torch.maximum(atol_t, rtol_t * torch.maximum(x_low.abs(), x_prev.abs()))
        error = torch.linalg.norm((x_low - x_high) / delta) / x.numel() ** 0.5
        if controller.propose(error):
            x_prev = x_low
            x = x_high + su * S_NOISE * noise.randn_like(x)
            s = t
    return x


# --- A1111's own samplers ------------------------------------------------------------------------


def _karras_levels(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    ramp = torch.linspace(0, 1, n)
    min_inv_rho, max_inv_rho = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    levels = (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho
    return torch.cat([levels, levels.new_zeros([1])])


def restart(x: torch.Tensor, sigmas: torch.Tensor, noise: NoiseSource) -> Program:
    """Restart sampling (Xu et al. 2023) as A1111 runs it: Heun steps, with one or two jumps back up.

    From 20 steps on, the schedule is rebuilt as Karras over fewer steps and the steps saved are spent
    re-noising from sigma ~0.1 back to ~2 and descending again.
    """
    steps = sigmas.shape[0] - 1
    restarts: dict[float, tuple[int, int, float]] = {}
    if steps >= 20:
        restart_steps, restart_times = 9, 1
        if steps >= 36:
            restart_steps, restart_times = steps // 4, 2
        sigmas = _karras_levels(steps - restart_steps * restart_times, sigmas[-2].item(), sigmas[0].item())
        restarts = {0.1: (restart_steps + 1, restart_times, 2.0)}
    by_index = {int(torch.argmin(abs(sigmas - key), dim=0)): value for key, value in restarts.items()}

    pairs: list[tuple[torch.Tensor, torch.Tensor]] = []
    for i in range(len(sigmas) - 1):
        pairs.append((sigmas[i], sigmas[i + 1]))
        if i + 1 in by_index:
            count, times, restart_max = by_index[i + 1]
            min_idx = i + 1
            max_idx = int(torch.argmin(abs(sigmas - restart_max), dim=0))
            if max_idx < min_idx:
                levels = _karras_levels(count, sigmas[min_idx].item(), sigmas[max_idx].item())[:-1]
                for _ in range(times):
                    pairs.extend(zip(levels[:-1], levels[1:]))

    last: torch.Tensor | None = None
    for old, new in pairs:
        if last is None:
            last = old
        elif last < old:
            x = x + noise.randn_like(x) * S_NOISE * (old ** 2 - last ** 2) ** 0.5
        denoised = yield Eval(x, old)
        d = _to_d(x, old, denoised)
        dt = new - old
        if new == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            denoised_2 = yield Eval(x_2, new)
            x = x + (d + _to_d(x_2, new, denoised_2)) / 2 * dt
        last = new
    return x


def lcm(x: torch.Tensor, sigmas: torch.Tensor, noise: NoiseSource) -> Program:
    """LCM: jump to the consistency model's clean estimate, re-noise to the next level."""
    for i in range(len(sigmas) - 1):
        x = yield Eval(x, sigmas[i])
        if sigmas[i + 1] > 0:
            x = x + sigmas[i + 1] * noise.randn_like(x)
    return x


# --- timestep samplers (A1111's DDIM and PLMS) ---------------------------------------------------


@dataclass(frozen=True)
class TimestepPlan:
    """Model timesteps in sampling order with ``alpha_bar`` at each and at the level after it."""

    timesteps: torch.Tensor       # model input times, first to last
    timesteps_next: torch.Tensor  # the time after each (PLMS's look-ahead for its first step)
    alphas: torch.Tensor          # alpha_bar at each time
    alphas_prev: torch.Tensor     # alpha_bar at the following time (float64, as A1111 indexes them)


def ddim(x: torch.Tensor, plan: TimestepPlan, noise: NoiseSource, eta: float = 0.0) -> Program:
    s_in = x.new_ones([x.shape[0], 1, 1, 1])
    sqrt_one_minus = torch.sqrt(1 - plan.alphas)
    sigmas = eta * ((1 - plan.alphas_prev) / (1 - plan.alphas.double()) * (1 - plan.alphas.double() / plan.alphas_prev))
    sigmas = sigmas.sqrt()
    for i in range(len(plan.timesteps)):
        e_t = yield Eval(x, plan.timesteps[i])
        a_t = plan.alphas[i].item() * s_in
        a_prev = plan.alphas_prev[i].item() * s_in
        sigma_t = sigmas[i].item() * s_in
        pred_x0 = (x - sqrt_one_minus[i].item() * s_in * e_t) / a_t.sqrt()
        dir_xt = (1.0 - a_prev - sigma_t ** 2).sqrt() * e_t
        x = a_prev.sqrt() * pred_x0 + dir_xt + sigma_t * noise.randn_like(x)
    return x


#: DDIM CFG++ maps the CFG scale [0, 12.5] onto CFG++'s guidance [0, 1].
CFGPP_SCALE_DIVISOR: Final[float] = 12.5


def ddim_cfgpp(x: torch.Tensor, plan: TimestepPlan, noise: NoiseSource, eta: float = 0.0) -> Program:
    """DDIM with CFG++ (Chung et al. 2024): the answer is ``(guided epsilon, unconditional epsilon)``; the
    clean estimate uses the guided one (CFG scale / 12.5), the direction back to x_t the unconditional."""
    s_in = x.new_ones([x.shape[0], 1, 1, 1])
    sqrt_one_minus = torch.sqrt(1 - plan.alphas)
    sigmas = (eta * ((1 - plan.alphas_prev) / (1 - plan.alphas.double())
                     * (1 - plan.alphas.double() / plan.alphas_prev))).sqrt()
    for i in range(len(plan.timesteps)):
        e_t, e_uncond = yield Eval(x, plan.timesteps[i])
        a_t = plan.alphas[i].item() * s_in
        a_prev = plan.alphas_prev[i].item() * s_in
        sigma_t = sigmas[i].item() * s_in
        pred_x0 = (x - sqrt_one_minus[i].item() * s_in * e_t) / a_t.sqrt()
        dir_xt = (1.0 - a_prev - sigma_t ** 2).sqrt() * e_uncond
        x = a_prev.sqrt() * pred_x0 + dir_xt + sigma_t * noise.randn_like(x)
    return x


def plms(x: torch.Tensor, plan: TimestepPlan, noise: NoiseSource) -> Program:
    s_in = x.new_ones([x.shape[0], 1, 1, 1])
    sqrt_one_minus = torch.sqrt(1 - plan.alphas)
    old_eps: list[torch.Tensor] = []

    def step(x: torch.Tensor, e_t: torch.Tensor, i: int) -> torch.Tensor:
        a_t = plan.alphas[i].item() * s_in
        a_prev = plan.alphas_prev[i].item() * s_in
        pred_x0 = (x - sqrt_one_minus[i].item() * s_in * e_t) / a_t.sqrt()
        return a_prev.sqrt() * pred_x0 + (1.0 - a_prev).sqrt() * e_t

    for i in range(len(plan.timesteps)):
        e_t = yield Eval(x, plan.timesteps[i])
        if not old_eps:  # pseudo improved Euler for the first step
            x_next = step(x, e_t, i)
            e_t_next = yield Eval(x_next, plan.timesteps_next[i])
            e_prime = (e_t + e_t_next) / 2
        elif len(old_eps) == 1:
            e_prime = (3 * e_t - old_eps[-1]) / 2
        elif len(old_eps) == 2:
            e_prime = (23 * e_t - 16 * old_eps[-1] + 5 * old_eps[-2]) / 12
        else:
            e_prime = (55 * e_t - 59 * old_eps[-1] + 37 * old_eps[-2] - 9 * old_eps[-3]) / 24
        x = step(x, e_prime, i)
        old_eps.append(e_t)
        if len(old_eps) >= 4:
            old_eps.pop(0)
    return x


# --- UniPC (A1111's port of the reference UniPC: multistep, B(h) = h, predicting x0) ---------------


@dataclass(frozen=True)
class VPSchedule:
    """The discrete VP noise schedule in continuous time: ``log alpha`` piecewise linear in ``t``.

    ``t`` runs over ``(i + 1) / N`` for the model's ``N`` timesteps; the model is fed ``(t - 1/N) * N``.
    """

    t_grid: torch.Tensor
    log_alpha: torch.Tensor

    @classmethod
    def from_alphas_cumprod(cls, alphas_cumprod: torch.Tensor) -> "VPSchedule":
        count = len(alphas_cumprod)
        return cls(t_grid=torch.linspace(0.0, 1.0, count + 1)[1:], log_alpha=0.5 * torch.log(alphas_cumprod))

    @property
    def total(self) -> int:
        return len(self.t_grid)

    def log_mean_coeff(self, t: torch.Tensor) -> torch.Tensor:
        """Piecewise-linear interpolation (edge segments extrapolated) of log alpha at ``t``."""
        grid, values = self.t_grid, self.log_alpha
        t = t.reshape(-1)
        start = (torch.searchsorted(grid, t, right=False) - 1).clamp(0, len(grid) - 2)
        x0, x1 = grid[start], grid[start + 1]
        y0, y1 = values[start], values[start + 1]
        return y0 + (t - x0) * (y1 - y0) / (x1 - x0)

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return torch.exp(self.log_mean_coeff(t))

    def std(self, t: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(1.0 - torch.exp(2.0 * self.log_mean_coeff(t)))

    def lambda_(self, t: torch.Tensor) -> torch.Tensor:
        log_mean = self.log_mean_coeff(t)
        return log_mean - 0.5 * torch.log(1.0 - torch.exp(2.0 * log_mean))

    def model_time(self, t: torch.Tensor) -> torch.Tensor:
        return (t - 1.0 / self.total) * 1000.0


@dataclass(frozen=True)
class UniPCPlan:
    """Continuous times from first to last (``steps + 1`` of them) on a VP schedule."""

    times: torch.Tensor
    schedule: VPSchedule
    order: int = 3


def unipc(x: torch.Tensor, plan: UniPCPlan, noise: NoiseSource) -> Program:
    """UniPC-bh1 multistep with lower-order warm-up and final steps, ending at the last time without a
    final denoise; the corrector's model call is reused as the next step's model output."""
    ns = VPSchedule(t_grid=plan.schedule.t_grid.to(x.device), log_alpha=plan.schedule.log_alpha.to(x.device))
    times = plan.times.to(x.device)
    steps = len(times) - 1
    order = max(1, min(plan.order, steps))
    batch = x.shape[0]

    def data_prediction(x: torch.Tensor, t: torch.Tensor) -> Program:
        eps = yield Eval(x, ns.model_time(t[:1])[0])
        return (x - ns.std(t)[:, None, None, None] * eps) / ns.alpha(t)[:, None, None, None]

    def update(x: torch.Tensor, models: list[torch.Tensor], prev_times: list[torch.Tensor], t: torch.Tensor,
               step_order: int, use_corrector: bool) -> Program:
        t_prev_0, model_prev_0 = prev_times[-1], models[-1]
        lambda_prev_0, lambda_t = ns.lambda_(t_prev_0), ns.lambda_(t)
        sigma_prev_0, sigma_t = ns.std(t_prev_0), ns.std(t)
        alpha_t = torch.exp(ns.log_mean_coeff(t))
        h = lambda_t - lambda_prev_0
        rks: list[torch.Tensor | float] = []
        d1s: list[torch.Tensor] = []
        for i in range(1, step_order):
            rk = ((ns.lambda_(prev_times[-(i + 1)]) - lambda_prev_0) / h)[0]
            rks.append(rk)
            d1s.append((models[-(i + 1)] - model_prev_0) / rk)
        rks.append(1.0)
        rks_t = torch.tensor(rks, device=x.device)
        hh = -h[0]
        h_phi_1 = torch.expm1(hh)
        h_phi_k = h_phi_1 / hh - 1
        factorial = 1
        b_h = hh
        rows, coeffs = [], []
        for i in range(1, step_order + 1):
            rows.append(torch.pow(rks_t, i - 1))
            coeffs.append(h_phi_k * factorial / b_h)
            factorial *= i + 1
            h_phi_k = h_phi_k / hh - 1 / factorial
        matrix = torch.stack(rows)
        b = torch.tensor(coeffs, device=x.device)
        stacked = torch.stack(d1s, dim=1) if d1s else None
        if stacked is not None:
            rhos_p = torch.tensor([0.5], device=x.device) if step_order == 2 \
                else torch.linalg.solve(matrix[:-1, :-1], b[:-1])
        if use_corrector:
            rhos_c = torch.tensor([0.5], device=x.device) if step_order == 1 else torch.linalg.solve(matrix, b)
        x_t_ = (sigma_t / sigma_prev_0)[:, None, None, None] * x \
            - (alpha_t * h_phi_1)[:, None, None, None] * model_prev_0
        predicted = torch.einsum("k,bkchw->bchw", rhos_p, stacked) if stacked is not None else 0
        x_t = x_t_ - (alpha_t * b_h)[:, None, None, None] * predicted
        model_t = None
        if use_corrector:
            model_t = yield from data_prediction(x_t, t)
            corrected = torch.einsum("k,bkchw->bchw", rhos_c[:-1], stacked) if stacked is not None else 0
            x_t = x_t_ - (alpha_t * b_h)[:, None, None, None] * (corrected + rhos_c[-1] * (model_t - model_prev_0))
        return x_t, model_t

    vec_t = times[0].expand(batch)
    models = [(yield from data_prediction(x, vec_t))]
    prev_times = [vec_t]
    for warm in range(1, order):
        vec_t = times[warm].expand(batch)
        x, model_x = yield from update(x, models, prev_times, vec_t, warm, True)
        if model_x is None:
            model_x = yield from data_prediction(x, vec_t)
        models.append(model_x)
        prev_times.append(vec_t)
    for step in range(order, steps + 1):
        vec_t = times[step].expand(batch)
        step_order = min(order, steps + 1 - step)
        x, model_x = yield from update(x, models, prev_times, vec_t, step_order, step != steps)
        for i in range(order - 1):
            prev_times[i] = prev_times[i + 1]
            models[i] = models[i + 1]
        prev_times[-1] = vec_t
        if step < steps:
            if model_x is None:
                model_x = yield from data_prediction(x, vec_t)
            models[-1] = model_x
    return x


# --- the table the scheduler reads -----------------------------------------------------------------

Denoiser = Literal["compvis", "lcm", "timestep", "timestep_cfgpp"]
PlanKind = Literal["sigmas", "ddpm", "unipc"]


@dataclass(frozen=True)
class ProgramSpec:
    """How to run one A1111 sampler.

    ``start(x, levels, noise)`` builds the program: ``levels`` are sigmas (ending in 0) for sigma-space
    samplers and a :class:`TimestepPlan` for timestep samplers. ``denoiser`` says how a model output
    becomes the program's answer; ``schedule_free`` samplers choose their own levels between the
    schedule's sigma_max and last non-zero sigma (DPM fast and adaptive); ``adaptive`` ones decide
    their evaluation points as they go; ``brownian`` ones draw Brownian-tree noise.
    """

    start: Callable[..., Program]
    space: Space = "sigma"
    denoiser: Denoiser = "compvis"
    schedule_free: bool = False
    adaptive: bool = False
    brownian: bool = False
    plan: PlanKind = "sigmas"


def _unchanged(x: torch.Tensor) -> Program:
    """A program with nothing left to run (an img2img tail past the last level)."""
    yield from ()
    return x


def _fast(x: torch.Tensor, sigmas: torch.Tensor, noise: NoiseSource) -> Program:
    if len(sigmas) < 2 or sigmas[0] == 0:
        return _unchanged(x)
    return dpm_fast(x, sigmas[-2].item(), sigmas[0].item(), len(sigmas) - 1, noise)


def _adaptive(x: torch.Tensor, sigmas: torch.Tensor, noise: NoiseSource) -> Program:
    if len(sigmas) < 2 or sigmas[0] == 0:
        return _unchanged(x)
    return dpm_adaptive(x, sigmas[-2].item(), sigmas[0].item(), noise)


PROGRAMS: Final[Mapping[str, ProgramSpec]] = {
    "euler": ProgramSpec(euler),
    "euler_ancestral": ProgramSpec(euler_ancestral),
    "lms": ProgramSpec(lms),
    "heun": ProgramSpec(heun),
    "dpm_2": ProgramSpec(dpm_2),
    "dpm_2_ancestral": ProgramSpec(dpm_2_ancestral),
    "dpmpp_2s_ancestral": ProgramSpec(dpmpp_2s_ancestral),
    "dpmpp_2m": ProgramSpec(dpmpp_2m),
    "dpmpp_sde": ProgramSpec(dpmpp_sde, brownian=True),
    "dpmpp_2m_sde": ProgramSpec(dpmpp_2m_sde, brownian=True),
    "dpmpp_2m_sde_heun": ProgramSpec(dpmpp_2m_sde_heun, brownian=True),
    "dpmpp_3m_sde": ProgramSpec(dpmpp_3m_sde, brownian=True),
    "dpm_fast": ProgramSpec(_fast, schedule_free=True),
    "dpm_adaptive": ProgramSpec(_adaptive, schedule_free=True, adaptive=True),
    "restart": ProgramSpec(restart),
    "lcm": ProgramSpec(lcm, denoiser="lcm"),
    "ddim": ProgramSpec(ddim, space="timestep", denoiser="timestep", plan="ddpm"),
    "ddim_cfgpp": ProgramSpec(ddim_cfgpp, space="timestep", denoiser="timestep_cfgpp", plan="ddpm"),
    "plms": ProgramSpec(plms, space="timestep", denoiser="timestep", plan="ddpm"),
    "unipc": ProgramSpec(unipc, space="timestep", denoiser="timestep", plan="unipc"),
}
