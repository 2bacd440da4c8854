"""Sampler noise drawn the way A1111 draws it: each image continues its own seed's stream.

A1111 (``modules/rng.py`` ``ImageRNG``) keeps one generator per image (of its random number source:
CPU, GPU or NV; :mod:`modules.generation.sampling.rng`), seeded with that image's seed; the initial latent noise is its first draw, and every later ``randn_like`` of a
k-diffusion sampler (ancestral steps, DPM fast/adaptive, Restart, LCM) is one more draw of the
latent's shape from each image's own generator, stacked. :class:`SeedStreams` reproduces that
stream without touching global RNG state, so a batch gives the same pictures as single images.

The SDE samplers (DPM++ SDE, 2M SDE, 3M SDE) instead draw Brownian increments from one
``torchsde.BrownianTree`` per image, seeded with the image's seed over ``[sigma_min, sigma_max]``
(A1111's ``create_noise_sampler``): :class:`BrownianNoise`.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import torch

from modules.generation.sampling.rng import NoiseStream, stream


class NoiseSource(Protocol):
    """What a sampler program draws its noise from."""

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        """Standard-normal noise shaped like ``x`` (one draw per image)."""

    def brownian(self, sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
        """A normalised Brownian increment between two noise levels (SDE samplers)."""


class SeedStreams:
    """Per-image generators (of ``source``) that continue each seed's stream after its initial noise."""

    def __init__(self, seeds: Sequence[int], *, skip_initial: bool = True, source: str = "CPU") -> None:
        self._seeds = [int(s) for s in seeds]
        self._skip_initial = skip_initial
        self._source = source
        self._generators: list[NoiseStream] | None = None

    def _start(self, shape: tuple[int, ...]) -> list[NoiseStream]:
        generators = [stream(self._source, seed) for seed in self._seeds]
        if self._skip_initial:  # the initial latent noise was the first draw of each stream
            for generator in generators:
                generator.randn(shape)
        return generators

    def first_draws(self, x: torch.Tensor) -> torch.Tensor:
        """Each image's first draw shaped like one latent of ``x`` (the initial noise; img2img's noise)."""
        return torch.stack([stream(self._source, seed).randn(tuple(x.shape[1:])) for seed in self._seeds]).to(
            device=x.device, dtype=x.dtype)

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        shape = tuple(x.shape[1:])
        if self._generators is None:
            self._generators = self._start(shape)
        if len(self._generators) != x.shape[0]:
            raise ValueError(f"{len(self._generators)} seeds for a batch of {x.shape[0]} latents")
        draws = [g.randn(shape) for g in self._generators]
        return torch.stack(draws).to(device=x.device, dtype=x.dtype)


class BrownianNoise:
    """One Brownian tree per image over ``[sigma_min, sigma_max]``, seeded with the image's seed."""

    def __init__(self, x: torch.Tensor, sigma_min: torch.Tensor, sigma_max: torch.Tensor,
                 seeds: Sequence[int]) -> None:
        import torchsde

        low, high = (sigma_min, sigma_max) if sigma_min < sigma_max else (sigma_max, sigma_min)
        self._sign = 1 if sigma_min < sigma_max else -1
        start = torch.zeros_like(x)[0]
        self._trees = [torchsde.BrownianTree(low, start, high, entropy=int(seed)) for seed in seeds]

    def __call__(self, sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
        t0, t1 = torch.as_tensor(sigma), torch.as_tensor(sigma_next)
        low, high, sign = (t0, t1, 1) if t0 < t1 else (t1, t0, -1)
        increment = torch.stack([tree(low, high) for tree in self._trees]) * (self._sign * sign)
        return increment / (t1 - t0).abs().sqrt()


class SamplerNoise:
    """The noise a program sees: seed streams, plus Brownian trees built on first SDE use."""

    def __init__(self, seeds: Sequence[int], sigma_range: tuple[torch.Tensor, torch.Tensor] | None = None,
                 source: str = "CPU") -> None:
        self._seeds = list(seeds)
        self._streams = SeedStreams(self._seeds, source=source)
        self._sigma_range = sigma_range
        self._brownian: BrownianNoise | None = None
        self._like: torch.Tensor | None = None

    def bind(self, x: torch.Tensor) -> None:
        """Remember the latent batch (shape, dtype, device) the Brownian trees are made for."""
        self._like = x

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        return self._streams.randn_like(x)

    def brownian(self, sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
        if self._brownian is None:
            if self._like is None or self._sigma_range is None:
                raise RuntimeError("Brownian noise needs the latent batch and the schedule's sigma range")
            self._brownian = BrownianNoise(self._like, *self._sigma_range, self._seeds)
        return self._brownian(sigma, sigma_next)


class ZeroNoise:
    """Noise of zeros: used to trace a program's evaluation points without a model."""

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)

    def brownian(self, sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
        return torch.zeros(())
