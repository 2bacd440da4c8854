"""A1111 seed semantics: seed planning for a job and initial latent noise.

`plan_seeds` mirrors ``process_images_inner`` (``all_seeds``/``all_subseeds``) and
`make_initial_noise` mirrors ``modules/rng.py`` ``ImageRNG.first()`` for each of A1111's random number
sources (``randn_source``: ``CPU``, ``GPU`` (its default) and ``NV``): :mod:`modules.generation.sampling.rng`
computes CUDA's numbers on any device, so images made on A1111's defaults reproduce here.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

import torch

from modules.generation.sampling.rng import randn as rng_randn

#: A1111 draws random seeds with ``random.randrange(4294967294)``.
SEED_RANGE = 4294967294


class SeedError(ValueError):
    """Invalid seed parameters (e.g. a non-positive batch size)."""


@dataclass(frozen=True)
class SeedPlan:
    """Seeds for every image of a job (``batch_size * n_iter`` entries)."""

    all_seeds: tuple[int, ...]
    all_subseeds: tuple[int, ...]
    seed: int
    subseed: int

    def batch(self, index: int, batch_size: int) -> tuple[list[int], list[int]]:
        """Seeds and subseeds of batch ``index`` (0-based) for a given batch size."""
        start, stop = index * batch_size, (index + 1) * batch_size
        return list(self.all_seeds[start:stop]), list(self.all_subseeds[start:stop])


def fix_seed(seed: int | str | None, rng: random.Random | None = None) -> int:
    """A fixed seed: None, "", unparsable or negative values become a random 32-bit seed.

    A1111's ``get_fixed_seed`` randomises only -1; Atelier randomises every negative value.
    """
    if isinstance(seed, str):
        try:
            seed = int(seed.strip())
        except ValueError:
            seed = None
    if seed is None or seed < 0:
        source = rng if rng is not None else random.Random()
        return int(source.randrange(SEED_RANGE))
    return int(seed)


def plan_seeds(
    seed: int | None,
    subseed: int | None,
    subseed_strength: float,
    batch_size: int,
    n_iter: int,
    rng: random.Random | None = None,
) -> SeedPlan:
    """Plan seeds like A1111: ``seed + i`` per image, unless variation strength is non-zero.

    With ``subseed_strength != 0`` every image keeps ``seed`` and the subseeds advance instead.
    """
    if batch_size < 1 or n_iter < 1:
        raise SeedError(f"batch_size and n_iter must be at least 1 (got {batch_size} and {n_iter})")
    fixed_seed = fix_seed(seed, rng)
    fixed_subseed = fix_seed(subseed, rng)
    count = batch_size * n_iter
    all_seeds = tuple(fixed_seed + (i if subseed_strength == 0 else 0) for i in range(count))
    all_subseeds = tuple(fixed_subseed + i for i in range(count))
    return SeedPlan(all_seeds=all_seeds, all_subseeds=all_subseeds, seed=all_seeds[0], subseed=all_subseeds[0])


def randn(seed: int, shape: Sequence[int], source: str = "CPU") -> torch.Tensor:
    """Standard-normal float32 CPU noise: the first draw of ``seed``'s stream from ``source``.

    Equivalent to A1111's ``rng.randn(seed, shape)`` (``torch.manual_seed(seed); torch.randn(shape)`` on the
    source's device), without touching the global RNG.
    """
    return rng_randn(seed, shape, source)


def slerp(val: float, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """A1111's ``slerp`` (``modules/rng.py``), kept exactly, including its linear fallback.

    Norms are taken over dim 1 of a ``(C, H, W)`` tensor, as in A1111. ``val = 0`` gives
    ``low``; ``val = 1`` gives ``high``. The near-parallel fallback ``low * val + high * (1 - val)``
    is A1111's own (inverted) formula and is preserved for bit-compatibility.
    """
    low_norm = low / torch.norm(low, dim=1, keepdim=True)
    high_norm = high / torch.norm(high, dim=1, keepdim=True)
    dot = (low_norm * high_norm).sum(1)

    if dot.mean() > 0.9995:
        return low * val + high * (1 - val)

    omega = torch.acos(dot)
    so = torch.sin(omega)
    return (torch.sin((1.0 - val) * omega) / so).unsqueeze(1) * low + (torch.sin(val * omega) / so).unsqueeze(1) * high


def _resize_from_shape(
    shape: tuple[int, int, int], seed_resize_from: tuple[int, int] | None, latent_factor: int
) -> tuple[int, int, int]:
    """Latent shape of the "resize seed from" size, or ``shape`` when disabled."""
    if seed_resize_from is None:
        return shape
    width, height = (int(v) for v in seed_resize_from)
    if width <= 0 or height <= 0:
        return shape
    return (shape[0], height // latent_factor, width // latent_factor)


def _place_centre(target: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Copy ``noise`` into the centre of ``target`` (A1111's dx/dy/tx/ty/w/h logic)."""
    dx = (target.shape[2] - noise.shape[2]) // 2
    dy = (target.shape[1] - noise.shape[1]) // 2
    w = noise.shape[2] if dx >= 0 else noise.shape[2] + 2 * dx
    h = noise.shape[1] if dy >= 0 else noise.shape[1] + 2 * dy
    tx = 0 if dx < 0 else dx
    ty = 0 if dy < 0 else dy
    dx = max(-dx, 0)
    dy = max(-dy, 0)
    target[:, ty:ty + h, tx:tx + w] = noise[:, dy:dy + h, dx:dx + w]
    return target


def make_initial_noise(
    shape: tuple[int, int, int],
    seeds: Sequence[int],
    subseeds: Sequence[int] | None,
    subseed_strength: float,
    seed_resize_from: tuple[int, int] | None,
    latent_factor: int = 8,
    source: str = "CPU",
) -> torch.Tensor:
    """Initial latent noise ``(len(seeds), C, H, W)`` exactly like A1111's ``ImageRNG.first()``.

    ``shape`` is the latent ``(C, H, W)``; ``seed_resize_from`` is ``(width, height)`` in pixels
    (None or non-positive values disable it). Float32 on the CPU; deterministic.
    """
    if len(shape) != 3 or any(int(d) <= 0 for d in shape):
        raise SeedError(f"Noise shape must be three positive dimensions (C, H, W), got {tuple(shape)}")
    if len(seeds) == 0:
        raise SeedError("At least one seed is required to make noise")
    latent_shape = tuple(int(d) for d in shape)
    noise_shape = _resize_from_shape(latent_shape, seed_resize_from, latent_factor)
    if noise_shape[1] <= 0 or noise_shape[2] <= 0:
        raise SeedError(f"Seed resize size {seed_resize_from} is smaller than one latent pixel")

    images: list[torch.Tensor] = []
    for i, seed in enumerate(seeds):
        subnoise = None
        if subseeds is not None and subseed_strength != 0:
            subseed = 0 if i >= len(subseeds) else subseeds[i]
            subnoise = randn(subseed, noise_shape, source)

        noise = randn(seed, noise_shape, source)
        if subnoise is not None:
            noise = slerp(subseed_strength, noise, subnoise)

        if noise_shape != latent_shape:
            noise = _place_centre(randn(seed, latent_shape, source), noise)

        images.append(noise)
    return torch.stack(images)
