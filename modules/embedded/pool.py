"""A fixed pool of rendered world scenes held in memory as uint8 (fast batches for CPU training)."""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from modules.world.dataset import scene_rng
from modules.world.render import render_scene
from modules.world.sampling import sample_scene
from modules.world.spec import Scene


@dataclass(frozen=True)
class ScenePool:
    """Scenes and their renders (N, 3, H, W) uint8."""

    scenes: tuple[Scene, ...]
    images: torch.Tensor

    def pixels(self, indices: torch.Tensor) -> torch.Tensor:
        """Renders at `indices` as float in [-1, 1]."""
        return self.images[indices].float() / 127.5 - 1.0

    def __len__(self) -> int:
        return len(self.scenes)


def pool_scenes(
    size: int, *, seed: int, exclude_shapes: Iterable[str] = (), max_shapes: int = 2, two_shape_prob: float = 0.3
) -> tuple[Scene, ...]:
    """The scenes of `render_pool` without rendering them; scene i depends only on (seed, i)."""
    excluded = tuple(exclude_shapes)
    return tuple(
        sample_scene(scene_rng(seed, i), exclude_shapes=excluded, max_shapes=max_shapes, two_shape_prob=two_shape_prob)
        for i in range(size)
    )


def render_pool(
    size: int,
    *,
    seed: int,
    resolution: int = 64,
    exclude_shapes: Iterable[str] = (),
    max_shapes: int = 2,
    two_shape_prob: float = 0.3,
) -> ScenePool:
    """Draw and render `size` scenes; scene i depends only on (seed, i)."""
    scenes = pool_scenes(size, seed=seed, exclude_shapes=exclude_shapes, max_shapes=max_shapes,
                         two_shape_prob=two_shape_prob)
    array = np.stack([np.asarray(render_scene(s, resolution)) for s in scenes])
    return ScenePool(scenes=scenes, images=torch.from_numpy(array).permute(0, 3, 1, 2).contiguous())


def batch_indices(pool_size: int, batch: int, *, seed: int, step: int) -> torch.Tensor:
    """Indices of the batch for `step` (a pure function of seed and step, so resumes are exact)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
    return torch.randint(0, pool_size, (batch,), generator=generator)


def step_rng(seed: int, step: int, salt: str) -> random.Random:
    """A stdlib RNG for per-step choices (captions, dropout)."""
    return random.Random(f"{salt}:{seed}:{step}")


def step_generator(seed: int, step: int) -> torch.Generator:
    """A torch generator for the random draws of one step (noise, timesteps, posterior samples)."""
    return torch.Generator().manual_seed(seed * 7_919 + step * 104_729 + 17)
