"""The A1111 sampler programs by name, with what the scheduler needs to know to run each.

The programs themselves live in :mod:`~modules.generation.sampling.a1111_ksamplers` (k-diffusion's samplers,
Restart, LCM), :mod:`~modules.generation.sampling.a1111_dpm_solver` (DPM fast and adaptive) and
:mod:`~modules.generation.sampling.a1111_timestep_samplers` (DDIM, DDIM CFG++, PLMS, UniPC).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Final, Literal, Mapping

import torch

from modules.generation.sampling import a1111_ksamplers as k
from modules.generation.sampling.a1111_dpm_solver import dpm_adaptive, dpm_fast
from modules.generation.sampling.a1111_noise import NoiseSource
from modules.generation.sampling.a1111_program_base import Eval, Program, Space
from modules.generation.sampling.a1111_timestep_samplers import (
    CFGPP_SCALE_DIVISOR,
    TimestepPlan,
    UniPCPlan,
    VPSchedule,
    ddim,
    ddim_cfgpp,
    plms,
    unipc,
)

__all__ = ["CFGPP_SCALE_DIVISOR", "PROGRAMS", "Eval", "Program", "ProgramSpec", "TimestepPlan", "UniPCPlan",
           "VPSchedule"]

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
    "euler": ProgramSpec(k.euler),
    "euler_ancestral": ProgramSpec(k.euler_ancestral),
    "lms": ProgramSpec(k.lms),
    "heun": ProgramSpec(k.heun),
    "dpm_2": ProgramSpec(k.dpm_2),
    "dpm_2_ancestral": ProgramSpec(k.dpm_2_ancestral),
    "dpmpp_2s_ancestral": ProgramSpec(k.dpmpp_2s_ancestral),
    "dpmpp_2m": ProgramSpec(k.dpmpp_2m),
    "dpmpp_sde": ProgramSpec(k.dpmpp_sde, brownian=True),
    "dpmpp_2m_sde": ProgramSpec(k.dpmpp_2m_sde, brownian=True),
    "dpmpp_2m_sde_heun": ProgramSpec(k.dpmpp_2m_sde_heun, brownian=True),
    "dpmpp_3m_sde": ProgramSpec(k.dpmpp_3m_sde, brownian=True),
    "dpm_fast": ProgramSpec(_fast, schedule_free=True),
    "dpm_adaptive": ProgramSpec(_adaptive, schedule_free=True, adaptive=True),
    "restart": ProgramSpec(k.restart),
    "lcm": ProgramSpec(k.lcm, denoiser="lcm"),
    "ddim": ProgramSpec(ddim, space="timestep", denoiser="timestep", plan="ddpm"),
    "ddim_cfgpp": ProgramSpec(ddim_cfgpp, space="timestep", denoiser="timestep_cfgpp", plan="ddpm"),
    "plms": ProgramSpec(plms, space="timestep", denoiser="timestep", plan="ddpm"),
    "unipc": ProgramSpec(unipc, space="timestep", denoiser="timestep", plan="unipc"),
}
