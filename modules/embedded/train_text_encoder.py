"""Stage: pretrain the text encoder to read what a caption asks for, before the UNet trains against it.

Stable Diffusion's UNet learns against a text encoder that already knows the language (OpenAI's CLIP, frozen).
Trained from scratch beside the UNet, the embedded model's encoder never told positions apart (prompts differing
only in position moved its output 25x less than prompts differing in colour; docs/benchmarks.md), and it bound
colours to the wrong noun ("a green square on a blue background" drew a blue square on green). This stage gives
it what CLIP gives SD: linear heads read every label the caption names (per shape: shape, colour, size,
position; and the background) from each hidden state from the end-of-text token on, which are the states that
have seen the whole caption (the encoder is causal) and most of the 77 the UNet attends to. The heads are
thrown away; `train_t2i` then trains the UNet against the frozen encoder.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import CLIPTextModel

from modules.embedded.config import SD1_TOKENIZER_CONFIG, Recipe, build_text_encoder
from modules.embedded.pool import batch_indices, pool_scenes, step_rng
from modules.models.tokenizers import load_clip_tokenizer
from modules.training.loop import TrainingRun, progress_log
from modules.training.noise_training import tokenize
from modules.world.captions import CaptionMentions, caption_scene_with_mentions
from modules.world.spec import BACKGROUND_COLOURS, POSITIONS, SHAPE_COLOURS, SHAPES, SIZES, Scene

UNNAMED = "-"
SHAPE_SLOTS = 2
# Label group -> classes; per shape slot for the first four, once for the background. UNNAMED: not in the caption.
SLOT_GROUPS: dict[str, tuple[str, ...]] = {
    "shape": SHAPES + (UNNAMED,),
    "colour": tuple(SHAPE_COLOURS) + (UNNAMED,),
    "size": SIZES + (UNNAMED,),
    "position": tuple(POSITIONS) + (UNNAMED,),
}
BACKGROUND_CLASSES: tuple[str, ...] = tuple(BACKGROUND_COLOURS) + (UNNAMED,)


def head_classes() -> dict[str, tuple[str, ...]]:
    """Every head's name and classes: shape0, colour0, size0, position0, shape1, ..., background."""
    heads = {f"{group}{slot}": classes for slot in range(SHAPE_SLOTS) for group, classes in SLOT_GROUPS.items()}
    heads["background"] = BACKGROUND_CLASSES
    return heads


def caption_targets(scene: Scene, mentions: CaptionMentions) -> dict[str, str]:
    """The label each head must read from a caption of `scene` that names `mentions`."""
    targets = {}
    for slot in range(SHAPE_SLOTS):
        shape = scene.shapes[slot] if slot < len(scene.shapes) else None
        targets[f"shape{slot}"] = shape.shape if shape else UNNAMED
        targets[f"colour{slot}"] = shape.colour if shape else UNNAMED
        targets[f"size{slot}"] = shape.size if shape and mentions.sizes[slot] else UNNAMED
        targets[f"position{slot}"] = shape.position if shape and mentions.positions[slot] else UNNAMED
    targets["background"] = scene.background if mentions.background else UNNAMED
    return targets


class CaptionHeads(torch.nn.Module):
    """One linear classifier per label head over the text encoder's hidden size."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.classes = head_classes()
        self.heads = torch.nn.ModuleDict(
            {name: torch.nn.Linear(hidden_size, len(classes)) for name, classes in self.classes.items()}
        )

    def target_indices(self, targets: list[dict[str, str]]) -> dict[str, torch.Tensor]:
        return {name: torch.tensor([classes.index(t[name]) for t in targets]) for name, classes in self.classes.items()}


def summary_mask(input_ids: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """True at the end-of-text token and every position after it (the padding is end-of-text too)."""
    first_eos = (input_ids == eos_token_id).int().argmax(dim=1, keepdim=True)
    return torch.arange(input_ids.shape[1]).unsqueeze(0) >= first_eos


def caption_head_loss(
    text_encoder: CLIPTextModel, heads: CaptionHeads, input_ids: torch.Tensor, targets: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean cross-entropy of every head at every summary position; accuracy at the end-of-text token for logging."""
    states = text_encoder(input_ids)[0]
    mask = summary_mask(input_ids, text_encoder.config.eos_token_id)
    per_caption = mask.sum(dim=1)
    flat = states[mask]
    first = torch.cat([torch.zeros(1, dtype=torch.long), per_caption.cumsum(0)[:-1]])
    losses, metrics = [], {}
    for name, head in heads.heads.items():
        logits = head(flat)
        losses.append(F.cross_entropy(logits, targets[name].repeat_interleave(per_caption)))
        metrics[f"acc_{name}"] = float((logits[first].argmax(dim=1) == targets[name]).float().mean())
    return torch.stack(losses).mean(), metrics


def caption_batch(scenes: tuple[Scene, ...], recipe: Recipe, step: int) -> tuple[list[str], list[dict[str, str]]]:
    """Captions of a batch of scenes, drawn as the text-to-image stage draws them, and their head targets."""
    rng = step_rng(recipe.seed, step, "te-caption")
    indices = batch_indices(len(scenes), recipe.text_encoder_batch, seed=recipe.seed + 33, step=step)
    captions, targets = [], []
    for index in indices.tolist():
        text, mentions = caption_scene_with_mentions(scenes[index], rng, p_position=recipe.caption_position_prob)
        captions.append(text)
        targets.append(caption_targets(scenes[index], mentions))
    return captions, targets


def train_text_encoder(
    work_dir: Path, recipe: Recipe, held_out: tuple[str, ...], log: bool = True,
    tick: Callable[[], None] | None = None,
) -> Path:
    """Train (or resume) in `work_dir/text-encoder-train`; saves the encoder to `work_dir/text-encoder`."""
    torch.manual_seed(recipe.seed + 3)
    tokenizer = load_clip_tokenizer(SD1_TOKENIZER_CONFIG, work_dir / "cache")
    text_encoder = build_text_encoder(recipe.text_encoder_config)
    heads = CaptionHeads(text_encoder.config.hidden_size)
    scenes = pool_scenes(recipe.pool_size, seed=recipe.seed, exclude_shapes=held_out,
                         two_shape_prob=recipe.two_shape_prob)  # the text-to-image pool's scenes
    run = TrainingRun(models={"text_encoder": text_encoder, "heads": heads}, config=recipe.text_encoder_loop,
                      work_dir=work_dir / "text-encoder-train")

    def step(i: int) -> tuple[torch.Tensor, dict[str, float]]:
        captions, targets = caption_batch(scenes, recipe, i)
        ids, indices = tokenize(tokenizer, captions), heads.target_indices(targets)
        loss, metrics = caption_head_loss(text_encoder, heads, ids, indices)
        return loss, {"acc_min": min(metrics.values()), "acc_position0": metrics["acc_position0"],
                      "acc_background": metrics["acc_background"]}

    run.run(step, on_log=progress_log("text_encoder", log, tick))
    target = work_dir / "text-encoder"
    text_encoder.save_pretrained(target)
    return target
