"""A1111's timestep samplers as programs: DDIM, DDIM CFG++, PLMS and UniPC.

They work on DDPM timesteps rather than sigmas: latents are not scaled by sigma, the model gets
the timestep itself and answers with its noise prediction. DDIM and PLMS follow A1111's
``sd_samplers_timesteps_impl`` (``range(0, 1000, 1000 // steps) + 1`` walked backwards, stopping
at t = 1), DDIM CFG++ is Chung et al. 2024 as A1111 maps it (CFG scale / 12.5), and UniPC (Zhao
et al. 2023) is the multistep bh1 solver of order 3 with x0 prediction in continuous time that
A1111's port of the reference implementation runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import torch

from modules.generation.sampling.a1111_noise import NoiseSource
from modules.generation.sampling.a1111_program_base import Eval, Program


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
