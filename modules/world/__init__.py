"""The shapes world: scenes, renders, captions and labels for the embedded default models."""

from modules.world.captions import caption_scene, full_caption, parse_prompt_to_labels
from modules.world.dataset import WorldDataset, image_to_tensor
from modules.world.render import render_scene
from modules.world.sampling import sample_scene, scene_labels
from modules.world.spec import (
    BACKGROUND_COLOURS,
    HELD_OUT_SHAPE,
    LABEL_GROUPS,
    POSITIONS,
    SHAPE_COLOURS,
    SHAPES,
    SIZES,
    Scene,
    Shape,
)

__all__ = [
    "BACKGROUND_COLOURS",
    "HELD_OUT_SHAPE",
    "LABEL_GROUPS",
    "POSITIONS",
    "SHAPE_COLOURS",
    "SHAPES",
    "SIZES",
    "Scene",
    "Shape",
    "WorldDataset",
    "caption_scene",
    "full_caption",
    "image_to_tensor",
    "parse_prompt_to_labels",
    "render_scene",
    "sample_scene",
    "scene_labels",
]
