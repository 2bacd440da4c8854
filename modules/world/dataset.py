"""A torch Dataset of rendered scenes with captions and labels (deterministic per seed and epoch)."""

from __future__ import annotations

import random
from collections.abc import Iterable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from modules.world.captions import caption_scene
from modules.world.render import render_scene
from modules.world.sampling import sample_scene, scene_labels
from modules.world.spec import Scene


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float tensor (3, H, W) scaled to [-1, 1]."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def scene_rng(seed: int, index: int, salt: str = "scene") -> random.Random:
    """A private RNG for one item, independent of access order."""
    return random.Random(f"{salt}:{seed}:{index}")


class WorldDataset(Dataset[dict[str, object]]):
    """`length` scenes drawn from `seed`; captions re-drawn each epoch (see `set_epoch`)."""

    def __init__(
        self,
        length: int,
        *,
        seed: int = 0,
        size: int = 64,
        exclude_shapes: Iterable[str] = (),
        max_shapes: int = 2,
        two_shape_prob: float = 0.3,
    ) -> None:
        self.length = length
        self.seed = seed
        self.size = size
        self.exclude_shapes = tuple(exclude_shapes)
        self.max_shapes = max_shapes
        self.two_shape_prob = two_shape_prob
        self.epoch = 0

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        """Select the caption draw used for this epoch."""
        self.epoch = epoch

    def scene(self, index: int) -> Scene:
        """The scene at `index` (same for every epoch)."""
        return sample_scene(
            scene_rng(self.seed, index),
            exclude_shapes=self.exclude_shapes,
            max_shapes=self.max_shapes,
            two_shape_prob=self.two_shape_prob,
        )

    def caption(self, index: int) -> str:
        """The caption of item `index` for the current epoch."""
        return caption_scene(self.scene(index), scene_rng(self.seed, index, f"caption{self.epoch}"))

    def __getitem__(self, index: int) -> dict[str, object]:
        scene = self.scene(index)
        return {
            "pixel_values": image_to_tensor(render_scene(scene, self.size)),
            "caption": caption_scene(scene, scene_rng(self.seed, index, f"caption{self.epoch}")),
            "labels": scene_labels(scene),
        }
