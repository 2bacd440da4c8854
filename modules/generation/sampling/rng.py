"""A1111's random-number sources, on any device: ``CPU``, ``GPU`` and ``NV``.

A1111 draws each image's noise from a generator seeded with the image's seed (``modules/rng.py``):

* ``CPU``: ``torch.Generator("cpu")``; the same numbers on every machine.
* ``GPU`` (A1111's default): ``torch.Generator("cuda")``. CUDA's ``randn`` is Philox4x32-10 (the
  cuRAND engine PyTorch uses): element ``i`` of the ``n``-th call is the first Box-Muller normal of
  ``philox(counter=(n, 0, i, 0), key=seed)``, as long as one launch covers the tensor (up to
  ``SMs x 2048`` elements: 16384 for a 512x512 SD latent; an SDXL 1024 latent of 65536 elements
  fits on a GPU with 32 or more SMs). So its numbers can be computed exactly on a CPU: the
  :class:`PhiloxGenerator` below. (A1111's ``NV`` source is that same computation.)
* ``NV``: the same numbers, named as A1111 names its CPU implementation of them.

The SDE samplers' Brownian trees are seeded by the image's seed on the CPU whatever the source (A1111 on a
GPU builds them with torchsde on CUDA: those few samplers do not reproduce a GPU-made picture).

Checked against the values PyTorch prints for ``torch.manual_seed(0); torch.randn(8, 8, device="cuda")``
(``tests/test_rng.py``). Every source here returns float32 CPU tensors; nothing touches global RNG state.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np
import torch

#: the sources A1111 offers (its ``randn_source`` option / the infotext's ``RNG``)
RNG_SOURCES = ("GPU", "CPU", "NV")

_M0, _M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
_W0, _W1 = np.uint32(0x9E3779B9), np.uint32(0xBB67AE85)
_TWO_POW32_INV = np.float32(2.3283064e-10)          # cuRAND's CURAND_2POW32_INV
_TWO_POW32_INV_2PI = np.float32(1.4629181e-09)      # CURAND_2POW32_INV_2PI


def philox4x32_10(counter: Sequence[np.ndarray], key: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Philox4x32 with 10 rounds over arrays of counters (four uint32 words) and keys (two words)."""
    c0, c1, c2, c3 = (np.asarray(word, dtype=np.uint32) for word in counter)
    k0, k1 = (np.asarray(word, dtype=np.uint32) for word in key)
    for round_no in range(10):
        if round_no:
            k0 = (k0 + _W0).astype(np.uint32)
            k1 = (k1 + _W1).astype(np.uint32)
        product0 = _M0 * c0.astype(np.uint64)
        product1 = _M1 * c2.astype(np.uint64)
        hi0, lo0 = (product0 >> np.uint64(32)).astype(np.uint32), product0.astype(np.uint32)
        hi1, lo1 = (product1 >> np.uint64(32)).astype(np.uint32), product1.astype(np.uint32)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return [c0, c1, c2, c3]


def box_muller_first(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """cuRAND's Box-Muller (``_curand_box_muller``): the first of the pair, ``sqrt(-2 ln u) * sin(v)``."""
    u = x.astype(np.float32) * _TWO_POW32_INV + _TWO_POW32_INV / np.float32(2.0)
    v = y.astype(np.float32) * _TWO_POW32_INV_2PI + _TWO_POW32_INV_2PI / np.float32(2.0)
    return (np.sqrt(np.float32(-2.0) * np.log(u)) * np.sin(v)).astype(np.float32)


class NoiseStream(Protocol):
    """One image's generator: each call draws the next standard-normal tensor of ``shape``."""

    def randn(self, shape: Sequence[int]) -> torch.Tensor: ...


class CpuStream:
    """A1111's ``CPU`` source: a CPU ``torch.Generator`` seeded with the image's seed."""

    def __init__(self, seed: int) -> None:
        self._generator = torch.Generator(device="cpu").manual_seed(int(seed))

    def randn(self, shape: Sequence[int]) -> torch.Tensor:
        return torch.randn(tuple(int(d) for d in shape), generator=self._generator, dtype=torch.float32)


class PhiloxGenerator:
    """CUDA's ``torch.randn`` stream for one seed, computed on the CPU (A1111's ``GPU`` and ``NV`` sources)."""

    def __init__(self, seed: int) -> None:
        self.seed = int(seed) & 0xFFFFFFFFFFFFFFFF
        self.offset = 0  # randn calls so far (each advances the Philox counter's low word by one)

    def randn(self, shape: Sequence[int]) -> torch.Tensor:
        shape = tuple(int(d) for d in shape)
        count = int(np.prod(shape)) if shape else 1
        if count >= 2**32:
            raise ValueError(f"{count} numbers in one draw: more than the Philox counter's index word holds")
        index = np.arange(count, dtype=np.uint32)
        zero = np.zeros(count, dtype=np.uint32)
        key = (zero + np.uint32(self.seed & 0xFFFFFFFF), zero + np.uint32(self.seed >> 32))
        x, y, _, _ = philox4x32_10((zero + np.uint32(self.offset & 0xFFFFFFFF), zero, index, zero), key)
        self.offset += 1
        return torch.from_numpy(box_muller_first(x, y).reshape(shape))


def check_source(source: str) -> str:
    """``source`` in A1111's spelling (any case); ValueError naming the choices."""
    for known in RNG_SOURCES:
        if str(source).strip().upper() == known:
            return known
    raise ValueError(f"unknown random number source {source!r}; one of: {', '.join(RNG_SOURCES)}")


def stream(source: str, seed: int) -> NoiseStream:
    """A new generator for ``seed`` from ``source`` ("CPU", "GPU" or "NV")."""
    return CpuStream(seed) if check_source(source) == "CPU" else PhiloxGenerator(seed)


def randn(seed: int, shape: Sequence[int], source: str = "CPU") -> torch.Tensor:
    """The first draw of ``seed``'s stream: A1111's ``rng.randn(seed, shape)`` for that source."""
    return stream(source, seed).randn(shape)
