"""A1111's k-diffusion samplers as programs: Euler (ancestral), Heun, DPM2 (ancestral), LMS, the
DPM-Solver++ family (2S a, 2M, SDE, 2M SDE, 3M SDE), and A1111's own Restart and LCM samplers.

The arithmetic is the published one of k-diffusion 0.1.1 (Karras et al. 2022; Lu et al. 2022,
DPM-Solver++) and of A1111's ``restart_sampler`` (Xu et al. 2023) and ``sample_lcm``, in the same
order of floating-point operations, so the same seed gives A1111's picture.
"""

from __future__ import annotations

import torch

from modules.generation.sampling.a1111_noise import NoiseSource
from modules.generation.sampling.a1111_program_base import (
    ETA,
    S_NOISE,
    Eval,
    Program,
    ancestral_step,
    sigma_of,
    t_of,
    to_d,
)


# --- first-order and Heun-type samplers --------------------------------------------------------


def euler(x: torch.Tensor, sigmas: torch.Tensor, noise: NoiseSource) -> Program:
    for i in range(len(sigmas) - 1):
        denoised = yield Eval(x, sigmas[i])
        x = x + to_d(x, sigmas[i], denoised) * (sigmas[i + 1] - sigmas[i])
    return x


def euler_ancestral(x: torch.Tensor, sigmas: torch.Tensor, noise: NoiseSource) -> Program:
    for i in range(len(sigmas) - 1):
        denoised = yield Eval(x, sigmas[i])
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1])
        x = x + to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
        if sigmas[i + 1] > 0:
            x = x + noise.randn_like(x) * S_NOISE * sigma_up
    return x


def heun(x: torch.Tensor, sigmas: torch.Tensor, noise: NoiseSource) -> Program:
    for i in range(len(sigmas) - 1):
        denoised = yield Eval(x, sigmas[i])
        d = to_d(x, sigmas[i], denoised)
        dt = sigmas[i + 1] - sigmas[i]
        if sigmas[i + 1] == 0:
            x = x + d * dt
            continue
        x_2 = x + d * dt
        denoised_2 = yield Eval(x_2, sigmas[i + 1])
        d_2 = to_d(x_2, sigmas[i + 1], denoised_2)
        x = x + (d + d_2) / 2 * dt
    return x


def dpm_2(x: torch.Tensor, sigmas: torch.Tensor, noise: NoiseSource) -> Program:
    for i in range(len(sigmas) - 1):
        denoised = yield Eval(x, sigmas[i])
        d = to_d(x, sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = x + d * (sigmas[i + 1] - sigmas[i])
            continue
        sigma_mid = sigmas[i].log().lerp(sigmas[i + 1].log(), 0.5).exp()
        x_2 = x + d * (sigma_mid - sigmas[i])
        denoised_2 = yield Eval(x_2, sigma_mid)
        x = x + to_d(x_2, sigma_mid, denoised_2) * (sigmas[i + 1] - sigmas[i])
    return x


def dpm_2_ancestral(x: torch.Tensor, sigmas: torch.Tensor, noise: NoiseSource) -> Program:
    for i in range(len(sigmas) - 1):
        denoised = yield Eval(x, sigmas[i])
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1])
        d = to_d(x, sigmas[i], denoised)
        if sigma_down == 0:
            x = x + d * (sigma_down - sigmas[i])
            continue
        sigma_mid = sigmas[i].log().lerp(sigma_down.log(), 0.5).exp()
        x_2 = x + d * (sigma_mid - sigmas[i])
        denoised_2 = yield Eval(x_2, sigma_mid)
        x = x + to_d(x_2, sigma_mid, denoised_2) * (sigma_down - sigmas[i])
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
        history.append(to_d(x, sigmas[i], denoised))
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
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1])
        if sigma_down == 0:
            x = x + to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
        else:
            t, t_next = t_of(sigmas[i]), t_of(sigma_down)
            h = t_next - t
            s = t + 0.5 * h
            x_2 = (sigma_of(s) / sigma_of(t)) * x - (-h * 0.5).expm1() * denoised
            denoised_2 = yield Eval(x_2, sigma_of(s))
            x = (sigma_of(t_next) / sigma_of(t)) * x - (-h).expm1() * denoised_2
        if sigmas[i + 1] > 0:
            x = x + noise.randn_like(x) * S_NOISE * sigma_up
    return x


def dpmpp_2m(x: torch.Tensor, sigmas: torch.Tensor, noise: NoiseSource) -> Program:
    previous: torch.Tensor | None = None
    for i in range(len(sigmas) - 1):
        denoised = yield Eval(x, sigmas[i])
        t, t_next = t_of(sigmas[i]), t_of(sigmas[i + 1])
        h = t_next - t
        if previous is None or sigmas[i + 1] == 0:
            x = (sigma_of(t_next) / sigma_of(t)) * x - (-h).expm1() * denoised
        else:
            r = (t - t_of(sigmas[i - 1])) / h
            blended = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * previous
            x = (sigma_of(t_next) / sigma_of(t)) * x - (-h).expm1() * blended
        previous = denoised
    return x


def dpmpp_sde(x: torch.Tensor, sigmas: torch.Tensor, noise: NoiseSource, r: float = 0.5) -> Program:
    for i in range(len(sigmas) - 1):
        denoised = yield Eval(x, sigmas[i])
        if sigmas[i + 1] == 0:
            x = x + to_d(x, sigmas[i], denoised) * (sigmas[i + 1] - sigmas[i])
            continue
        t, t_next = t_of(sigmas[i]), t_of(sigmas[i + 1])
        h = t_next - t
        s = t + h * r
        fac = 1 / (2 * r)
        # first stage: to the intermediate level s
        sd, su = ancestral_step(sigma_of(t), sigma_of(s))
        s_ = t_of(sd)
        x_2 = (sigma_of(s_) / sigma_of(t)) * x - (t - s_).expm1() * denoised
        x_2 = x_2 + noise.brownian(sigma_of(t), sigma_of(s)) * S_NOISE * su
        denoised_2 = yield Eval(x_2, sigma_of(s))
        # second stage: the full step with the blended estimate
        sd, su = ancestral_step(sigma_of(t), sigma_of(t_next))
        t_next_ = t_of(sd)
        blended = (1 - fac) * denoised + fac * denoised_2
        x = (sigma_of(t_next_) / sigma_of(t)) * x - (t - t_next_).expm1() * blended
        x = x + noise.brownian(sigma_of(t), sigma_of(t_next)) * S_NOISE * su
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
        d = to_d(x, old, denoised)
        dt = new - old
        if new == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            denoised_2 = yield Eval(x_2, new)
            x = x + (d + to_d(x_2, new, denoised_2)) / 2 * dt
        last = new
    return x


def lcm(x: torch.Tensor, sigmas: torch.Tensor, noise: NoiseSource) -> Program:
    """LCM: jump to the consistency model's clean estimate, re-noise to the next level."""
    for i in range(len(sigmas) - 1):
        x = yield Eval(x, sigmas[i])
        if sigmas[i + 1] > 0:
            x = x + sigmas[i + 1] * noise.randn_like(x)
    return x
