"""The world classifier: one ViT, multi-label logits over concatenated label groups, decoded per group."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification, PreTrainedModel, ViTImageProcessor

from modules.world.spec import LABEL_GROUPS

# Patch 16 (16 tokens + CLS): 7500 steps took 20.8 min on one contended core, shape head 99.1% (held-out renders);
# patch 8 (64 tokens) took 50.2 min for 97.1% (both measured on the shared 2-core machine; see docs/benchmarks.md).
CLASSIFIER_CONFIG: dict[str, Any] = {
    "image_size": 64,
    "patch_size": 16,
    "num_channels": 3,
    "hidden_size": 128,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "intermediate_size": 256,
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
}


#: how much each label group counts when the gallery is searched with this classifier (written into its
#: config.json as ``atelier_search_weights``; modules/understanding/label_space.py): "find similar" is about the
#: subject first (shape, colour), the scene (background, position, size) breaks ties
SEARCH_WEIGHTS: dict[str, float] = {"shape": 1.0, "colour": 1.0, "background": 0.25, "position": 0.25, "size": 0.25}


def label_names(groups: dict[str, tuple[str, ...]] = LABEL_GROUPS) -> list[str]:
    """Flat label names "group=value" in logit order."""
    return [f"{group}={value}" for group, values in groups.items() for value in values]


def build_classifier(config: dict[str, Any] = CLASSIFIER_CONFIG) -> PreTrainedModel:
    """A fresh transformers image classifier (`model_type` in `config`, default "vit") whose labels are
    "group=value" in logit order (see `groups_from_config`)."""
    names = label_names()
    settings = dict(config)
    model_config = AutoConfig.for_model(
        settings.pop("model_type", "vit"),
        **settings,
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
        problem_type="multi_label_classification",
    )
    return AutoModelForImageClassification.from_config(model_config)


def groups_from_config(config: Any) -> dict[str, list[str]]:
    """Label groups in logit order, read from `id2label` ("group=value").

    (Not from a dict in the config: `save_pretrained` writes JSON with sorted keys, which would reorder groups.)
    """
    groups: dict[str, list[str]] = {}
    for index in sorted(config.id2label, key=int):
        group, _, value = str(config.id2label[index]).partition("=")
        groups.setdefault(group, []).append(value)
    return groups


def build_processor(size: int = 64) -> ViTImageProcessor:
    """Resize to the native size and scale pixels to [-1, 1] (mean 0.5, std 0.5)."""
    return ViTImageProcessor(
        do_resize=True, size={"height": size, "width": size}, do_normalize=True,
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5], resample=Image.Resampling.BILINEAR,
    )


def group_slices(groups: dict[str, list[str]]) -> dict[str, slice]:
    """Logit ranges of each group."""
    slices, start = {}, 0
    for group, values in groups.items():
        slices[group] = slice(start, start + len(values))
        start += len(values)
    return slices


def grouped_cross_entropy(logits: torch.Tensor, targets: dict[str, torch.Tensor], groups: dict[str, list[str]]) -> torch.Tensor:
    """Sum over groups of the softmax cross-entropy within each group's logits."""
    slices = group_slices(groups)
    return sum(F.cross_entropy(logits[:, slices[g]], targets[g]) for g in groups)


class WorldClassifier:
    """Loads a saved classifier and predicts one label per group for PIL images."""

    def __init__(self, folder: Path) -> None:
        self.model = AutoModelForImageClassification.from_pretrained(folder).eval()
        self.processor = AutoImageProcessor.from_pretrained(folder)
        self.groups = groups_from_config(self.model.config)

    @torch.no_grad()
    def logits(self, images: list[Image.Image]) -> torch.Tensor:
        """Raw logits (N, total labels)."""
        pixels = self.processor(images=[im.convert("RGB") for im in images], return_tensors="pt").pixel_values
        return self.model(pixel_values=pixels).logits

    def predict(self, images: list[Image.Image]) -> list[dict[str, str]]:
        """Per image, the argmax label within each group."""
        logits = self.logits(images)
        slices = group_slices(self.groups)
        picks = {g: logits[:, s].argmax(dim=1).tolist() for g, s in slices.items()}
        return [{g: self.groups[g][picks[g][i]] for g in self.groups} for i in range(len(images))]
