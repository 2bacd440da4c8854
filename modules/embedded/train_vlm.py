"""Train the shapes VLM (``models/VLM/atelier-shapes-vlm``): a scaled-down LLaVA whose vision tower starts from the
world classifier's encoder, trained on question/answer conversations about fresh world renders (one and two
images per conversation), then saved with its processor and chat template, measured on held-out renders, and
given its model card.

    python -m modules.embedded.train_vlm [--out models/VLM/atelier-shapes-vlm] [--work .embedded-work/vlm-train]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from modules.embedded.pool import step_rng
from modules.embedded.train_classifier import augment
from modules.embedded.vlm_data import IGNORE, Focus, encode, pad_batch, sample_conversation
from modules.embedded.vlm_model import (TEXT_CONFIG, VLM_NAME, build_model, build_processor, image_tokens,
                                        start_vision_from_classifier)
from modules.embedded.vlm_questions import vocabulary
from modules.training.loop import LoopConfig, TrainingRun, progress_log
from modules.world.dataset import image_to_tensor
from modules.world.render import render_scene

ROOT = Path(__file__).resolve().parents[2]
CLASSIFIER = ROOT / "models" / "classifier" / "atelier-shapes-vit"


@dataclass(frozen=True)
class VLMRecipe:
    """Steps and batch of the VLM run (one torch thread; see the model card for the measured time)."""

    loop: LoopConfig = LoopConfig(steps=4200, learning_rate=1e-3, warmup_steps=100, weight_decay=0.01,
                                  log_every=25, checkpoint_every=200)
    batch: int = 32
    seed: int = 300
    augment_prob: float = 0.5
    two_image_prob: float = 0.35
    # From this step on, half of the questions are of the types that need the shape (measured at step 2000: every
    # other type 100%, shape at chance; the projected CLS token holds the shape, the language model had not learnt
    # to read it).
    focus_from: int = 2000
    focus: Focus = Focus(kinds=("shape", "yes_no", "describe"), prob=0.5)


def training_batch(processor: Any, recipe: VLMRecipe, step: int) -> dict[str, torch.Tensor]:
    """The conversations of ``step`` (a pure function of the seed and step, so resumes are exact)."""
    rng = step_rng(recipe.seed, step, "vlm")
    focus = recipe.focus if step >= recipe.focus_from else Focus()
    conversations = [sample_conversation(rng, recipe.seed, step * recipe.batch + i, recipe.two_image_prob, focus)
                     for i in range(recipe.batch)]
    pixels = []
    for conversation in conversations:
        for scene in conversation.scenes:
            image = render_scene(scene, 64)
            if rng.random() < recipe.augment_prob:
                image = augment(image, rng)
            pixels.append(image_to_tensor(image))
    batch = pad_batch([encode(processor, c, image_tokens()) for c in conversations], processor.tokenizer.pad_token_id)
    batch["pixel_values"] = torch.stack(pixels)
    return batch


def answer_loss(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    """Next-token cross-entropy on the answer tokens, and the share of answer tokens predicted right."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   pixel_values=batch["pixel_values"]).logits
    shifted, target = logits[:, :-1].reshape(-1, logits.shape[-1]), batch["labels"][:, 1:].reshape(-1)
    loss = F.cross_entropy(shifted, target, ignore_index=IGNORE)
    scored = target != IGNORE
    accuracy = (shifted.argmax(-1)[scored] == target[scored]).float().mean()
    return loss, {"token_accuracy": float(accuracy)}


def train_vlm(out: Path, work: Path, recipe: VLMRecipe = VLMRecipe(), *, log: bool = True) -> dict[str, Any]:
    """Train (or resume) in ``work``; save the model and processor to ``out``; return timing facts."""
    torch.manual_seed(recipe.seed)
    processor = build_processor(vocabulary())
    model = build_model(processor.tokenizer)
    from_classifier = start_vision_from_classifier(model, CLASSIFIER)
    if from_classifier:  # the classifier's encoder already reads the world: keep it, train projector + language model
        model.model.vision_tower.requires_grad_(False)
    run = TrainingRun(models={"vlm": model}, config=recipe.loop, work_dir=work)
    start = time.perf_counter()
    run.run(lambda step: answer_loss(model, training_batch(processor, recipe, step)), on_log=progress_log("vlm", log))
    seconds = time.perf_counter() - start
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return {"wall_seconds_this_call": seconds, "vision_from_classifier": from_classifier,
            "threads": torch.get_num_threads()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "models" / "VLM" / VLM_NAME)
    parser.add_argument("--work", type=Path, default=ROOT / ".embedded-work" / "vlm-train")
    parser.add_argument("--steps", type=int, default=None, help="override the recipe's steps")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 on the shared 2-core machine)")
    parser.add_argument("--eval", type=int, default=200, help="held-out renders to score after training")
    parser.add_argument("--note", default="", help="a paragraph for the model card (how this run went)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    recipe = VLMRecipe()
    if args.steps:
        recipe = VLMRecipe(loop=LoopConfig(**{**recipe.loop.__dict__, "steps": args.steps}))
    facts = train_vlm(args.out, args.work, recipe)
    from modules.embedded.vlm_card import write_card
    from modules.embedded.vlm_eval import evaluate

    scores = evaluate(args.out, count=args.eval, chats=args.eval // 2)
    (args.out / "scores.json").write_text(json.dumps(scores, indent=2))
    write_card(args.out, args.work, recipe, facts, scores, TEXT_CONFIG, note=args.note)
    print(f"[vlm] single-image exact match {scores['single']['overall']:.1%}, two-image check "
          f"{scores['two_image']['per_type'].get('first again', {}).get('rate', 0):.1%}", flush=True)


if __name__ == "__main__":
    main()
