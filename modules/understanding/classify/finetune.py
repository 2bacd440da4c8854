"""Fine-tuning an image classifier on a labelled folder (one sub-folder per label, its images inside).

The base classifier's backbone is kept and its head replaced by one with the folder's labels; every weight
is trained (AdamW, cross-entropy) for a few epochs. With at least 5 images per label, every 5th image of each
label is held out and the held-out accuracy reported. The result is saved as a transformers folder
(``save_pretrained`` with its image processor and a ``training.json``) that Classify lists.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from modules.understanding.image_models import ImageModelError

if TYPE_CHECKING:
    from PIL import Image

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
HOLD_OUT_EVERY = 5


@dataclass(frozen=True)
class LabelledSet:
    labels: list[str]
    train: list[tuple[Path, int]]
    held_out: list[tuple[Path, int]]


@dataclass(frozen=True)
class FinetuneOutcome:
    labels: list[str]
    epochs: int
    steps: int
    train_images: int
    held_out_images: int
    train_accuracy: float
    held_out_accuracy: float | None
    final_loss: float
    stopped: bool


def labelled_set(folder: Path, list_images: Callable[[Path], list[Path]]) -> LabelledSet:
    """The labels (sub-folder names, sorted) and their images, or ImageModelError saying what is wrong."""
    subs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    per_label = [(sub.name, list_images(sub)) for sub in subs]
    per_label = [(name, files) for name, files in per_label if files]
    if len(per_label) < 2:
        raise ImageModelError("a labelled folder needs at least two sub-folders with images in them (one sub-folder "
                              "per label)")
    hold = all(len(files) >= HOLD_OUT_EVERY for _, files in per_label)
    train: list[tuple[Path, int]] = []
    held: list[tuple[Path, int]] = []
    for index, (_, files) in enumerate(per_label):
        for n, path in enumerate(files):
            (held if hold and n % HOLD_OUT_EVERY == HOLD_OUT_EVERY - 1 else train).append((path, index))
    return LabelledSet(labels=[name for name, _ in per_label], train=train, held_out=held)


def check_name(name: str) -> str:
    name = (name or "").strip()
    if not NAME.match(name):
        raise ImageModelError(f"the new model's name {name!r} may hold letters, digits, '.', '_' and '-' (up to 64, "
                              f"starting with a letter or digit)")
    return name


def _load(paths: Sequence[tuple[Path, int]]) -> tuple[list["Image.Image"], list[int]]:
    from PIL import Image

    images, targets = [], []
    for path, label in paths:
        try:
            with Image.open(path) as image:
                images.append(image.convert("RGB"))
                targets.append(label)
        except OSError:
            continue
    return images, targets


def finetune(base: Path, data: LabelledSet, out: Path, *, epochs: int, learning_rate: float, batch: int,
             seed: int, on_step: Callable[[int, int, float], None], should_stop: Callable[[], bool],
             device: str = "cpu", extra_card: dict[str, Any] | None = None) -> FinetuneOutcome:
    """Train ``base`` on ``data`` and save it to ``out`` (written beside, then moved in place). ``on_step(step,
    total, loss)`` after every step; ``should_stop()`` ends the training early (nothing is saved then)."""
    import torch
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    torch.manual_seed(seed)
    id2label = dict(enumerate(data.labels))
    try:
        processor = AutoImageProcessor.from_pretrained(base, local_files_only=True)
        model = AutoModelForImageClassification.from_pretrained(
            base, local_files_only=True, num_labels=len(data.labels), id2label=id2label,
            label2id={v: k for k, v in id2label.items()}, ignore_mismatched_sizes=True)
    except Exception as exc:  # noqa: BLE001 - a broken base folder
        raise ImageModelError(f"the base classifier could not be loaded: {str(exc).splitlines()[0][:300]}") from None
    train_images, train_targets = _load(data.train)
    held_images, held_targets = _load(data.held_out)
    if not train_images:
        raise ImageModelError("none of the labelled images could be read")
    model.to(device)
    targets = torch.tensor(train_targets)
    optimiser = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    per_epoch = (len(train_images) + batch - 1) // batch
    total, step, loss_value, stopped = epochs * per_epoch, 0, float("nan"), False
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(train_images), generator=generator)
        for start in range(0, len(order), batch):
            if should_stop():
                stopped = True
                break
            idx = order[start:start + batch]
            chunk = [train_images[i] for i in idx.tolist()]
            pixels = processor(images=chunk, return_tensors="pt").pixel_values.to(device)
            loss = torch.nn.functional.cross_entropy(model(pixel_values=pixels).logits, targets[idx].to(device))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            step += 1
            loss_value = float(loss.detach())
            on_step(step, total, loss_value)
        if stopped:
            break
    model.eval()

    def accuracy(images: list["Image.Image"], wanted: list[int]) -> float | None:
        if not images:
            return None
        right = 0
        with torch.inference_mode():
            for start in range(0, len(images), batch):
                px = processor(images=images[start:start + batch], return_tensors="pt").pixel_values.to(device)
                got = model(pixel_values=px).logits.argmax(-1).cpu()
                right += int((got == torch.tensor(wanted[start:start + batch])).sum())
        return right / len(images)

    outcome = FinetuneOutcome(labels=data.labels, epochs=epochs, steps=step, train_images=len(train_images),
                              held_out_images=len(held_images),
                              train_accuracy=accuracy(train_images, train_targets) or 0.0,
                              held_out_accuracy=accuracy(held_images, held_targets), final_loss=loss_value,
                              stopped=stopped)
    if not stopped:
        save(model.to("cpu"), processor, out, {**asdict(outcome), "base": base.name, "learning_rate": learning_rate,
                                     "batch": batch, "seed": seed, **(extra_card or {})})
    return outcome


def save(model: Any, processor: Any, out: Path, card: dict[str, Any]) -> None:
    """Save to a hidden folder beside ``out``, then swap it in (an older model of the name goes only then)."""
    temporary = out.with_name(f".{out.name}.{os.getpid()}.partial")
    shutil.rmtree(temporary, ignore_errors=True)
    model.save_pretrained(temporary)
    processor.save_pretrained(temporary)
    (temporary / "training.json").write_text(json.dumps(card, indent=2), encoding="utf-8")
    old = out.with_name(f".{out.name}.{os.getpid()}.old")
    if out.exists():
        os.replace(out, old)
    os.replace(temporary, out)
    shutil.rmtree(old, ignore_errors=True)
