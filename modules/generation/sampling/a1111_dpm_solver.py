"""DPM-Solver-fast and DPM-Solver-adaptive (Lu et al. 2022) as A1111 runs them (k-diffusion's
``DPMSolver``, with A1111's eta 1: ancestral noise from each image's seed stream).

Both choose their own levels, evenly or adaptively spaced in log-sigma between the schedule's
largest and smallest non-zero sigma; DPM adaptive's evaluation points depend on the model's answers.
"""

from __future__ import annotations

import math
from typing import Callable, Final, Mapping

import torch

from modules.generation.sampling.a1111_noise import NoiseSource
from modules.generation.sampling.a1111_program_base import ETA, S_NOISE, Eval, Program, ancestral_step, sigma_of, t_of


class _Eps:
    """DPM-Solver's noise predictions at log-SNR times, cached within one step by key."""

    def __init__(self) -> None:
        self.cache: dict[str, torch.Tensor] = {}

    def get(self, key: str, x: torch.Tensor, t: torch.Tensor) -> Program:
        if key in self.cache:
            return self.cache[key]
        denoised = yield Eval(x, sigma_of(t))
        eps = (x - denoised) / sigma_of(t)
        self.cache[key] = eps
        return eps


def _dpm_solver_1(x: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor, eps: _Eps) -> Program:
    h = t_next - t
    e = yield from eps.get("eps", x, t)
    return x - sigma_of(t_next) * h.expm1() * e


def _dpm_solver_2(x: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor, eps: _Eps, r1: float = 1 / 2) -> Program:
    h = t_next - t
    e = yield from eps.get("eps", x, t)
    s1 = t + r1 * h
    u1 = x - sigma_of(s1) * (r1 * h).expm1() * e
    e_r1 = yield from eps.get("eps_r1", u1, s1)
    return x - sigma_of(t_next) * h.expm1() * e - sigma_of(t_next) / (2 * r1) * h.expm1() * (e_r1 - e)


def _dpm_solver_3(x: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor, eps: _Eps,
                  r1: float = 1 / 3, r2: float = 2 / 3) -> Program:
    h = t_next - t
    e = yield from eps.get("eps", x, t)
    s1, s2 = t + r1 * h, t + r2 * h
    u1 = x - sigma_of(s1) * (r1 * h).expm1() * e
    e_r1 = yield from eps.get("eps_r1", u1, s1)
    u2 = x - sigma_of(s2) * (r2 * h).expm1() * e \
        - sigma_of(s2) * (r2 / r1) * ((r2 * h).expm1() / (r2 * h) - 1) * (e_r1 - e)
    e_r2 = yield from eps.get("eps_r2", u2, s2)
    return x - sigma_of(t_next) * h.expm1() * e - sigma_of(t_next) / r2 * (h.expm1() / h - 1) * (e_r2 - e)


_DPM_STEPS: Final[Mapping[int, Callable[..., Program]]] = {1: _dpm_solver_1, 2: _dpm_solver_2, 3: _dpm_solver_3}


def dpm_fast(x: torch.Tensor, sigma_min: float, sigma_max: float, nfe: int, noise: NoiseSource) -> Program:
    """DPM-Solver-fast: ``nfe`` model calls in third-order steps evenly spaced in log-sigma."""
    eta = ETA
    t_start, t_end = t_of(torch.tensor(sigma_max)), t_of(torch.tensor(sigma_min))
    m = math.floor(nfe / 3) + 1
    ts = torch.linspace(t_start, t_end, m + 1, device=x.device)
    orders = [3] * (m - 2) + [2, 1] if nfe % 3 == 0 else [3] * (m - 1) + [nfe % 3]
    for i, order in enumerate(orders):
        eps = _Eps()
        t, t_next = ts[i], ts[i + 1]
        if eta:
            sd, su = ancestral_step(sigma_of(t), sigma_of(t_next), eta)
            t_next_ = torch.minimum(t_end, t_of(sd))
            su = (sigma_of(t_next) ** 2 - sigma_of(t_next_) ** 2) ** 0.5
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
    t_start, t_end = t_of(torch.tensor(sigma_max)), t_of(torch.tensor(sigma_min))
    atol_t, rtol_t = torch.tensor(atol), torch.tensor(rtol)
    s = t_start
    x_prev = x
    controller = _StepSizeController(abs(h_init), 1.5 if eta else 3)
    while s < t_end - 1e-5:
        eps = _Eps()
        t = torch.minimum(t_end, s + controller.h)
        if eta:
            sd, su = ancestral_step(sigma_of(s), sigma_of(t), eta)
            t_ = torch.minimum(t_end, t_of(sd))
            su = (sigma_of(t) ** 2 - sigma_of(t_) ** 2) ** 0.5
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
