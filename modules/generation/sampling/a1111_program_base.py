"""What every A1111 sampler program shares: the evaluation request and k-diffusion's small helpers.

A sampler is a Python generator (a *program*): it yields an :class:`Eval` (the latents to denoise and
the noise level, or DDPM timestep, to denoise them at), receives the model's answer and finally returns
the sampled latents, so a diffusers pipeline's own loop can drive it one model call at a time
(:mod:`modules.generation.sampling.a1111_scheduler`) while its arithmetic stays that of the sampling
functions A1111 runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Generator, Literal

import torch


@dataclass(frozen=True)
class Eval:
    """One model evaluation requested by a program: latents ``x`` at ``level``.

    ``level`` is a sigma (0-dim tensor) for sigma-space programs and a model timestep for
    timestep programs.
    """

    x: torch.Tensor
    level: torch.Tensor


Program = Generator[Eval, Any, torch.Tensor]
Space = Literal["sigma", "timestep"]

#: A1111's defaults: ``eta_ancestral`` 1.0 (ancestral and SDE samplers, DPM fast/adaptive), ``s_noise`` 1.0.
ETA: Final[float] = 1.0
S_NOISE: Final[float] = 1.0


def to_d(x: torch.Tensor, sigma: torch.Tensor, denoised: torch.Tensor) -> torch.Tensor:
    """The Karras ODE derivative dx/dsigma."""
    return (x - denoised) / sigma


def ancestral_step(sigma_from: torch.Tensor, sigma_to: torch.Tensor,
                   eta: float = ETA) -> tuple[torch.Tensor, torch.Tensor | float]:
    """Split a step into a deterministic part down to ``sigma_down`` and fresh noise ``sigma_up``."""
    if not eta:
        return sigma_to, 0.0
    sigma_up = min(sigma_to, eta * (sigma_to ** 2 * (sigma_from ** 2 - sigma_to ** 2) / sigma_from ** 2) ** 0.5)
    sigma_down = (sigma_to ** 2 - sigma_up ** 2) ** 0.5
    return sigma_down, sigma_up


def sigma_of(t: torch.Tensor) -> torch.Tensor:
    """DPM-Solver's time ``t = -log sigma``, back to sigma."""
    return t.neg().exp()


def t_of(sigma: torch.Tensor) -> torch.Tensor:
    """DPM-Solver's time ``t = -log sigma``."""
    return sigma.log().neg()
