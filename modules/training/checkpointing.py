"""Save and resume training state (models, optimizer, LR schedule, EMA, step) in one file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_NAME = "training-state.pt"


def save_training_state(
    folder: Path,
    *,
    step: int,
    models: dict[str, torch.nn.Module],
    optimizer: torch.optim.Optimizer,
    lr_scheduler: torch.optim.lr_scheduler.LRScheduler,
    ema: dict[str, Any] | None = None,
) -> Path:
    """Write the state atomically to `folder/training-state.pt` and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {
        "step": step,
        "models": {name: model.state_dict() for name, model in models.items()},
        "optimizer": optimizer.state_dict(),
        "lr_scheduler": lr_scheduler.state_dict(),
        "ema": {name: e.state_dict() for name, e in (ema or {}).items()},
        "torch_rng": torch.get_rng_state(),
    }
    path = folder / CHECKPOINT_NAME
    partial = path.with_suffix(".partial")
    torch.save(state, partial)
    os.replace(partial, path)
    return path


def load_training_state(
    folder: Path,
    *,
    models: dict[str, torch.nn.Module],
    optimizer: torch.optim.Optimizer,
    lr_scheduler: torch.optim.lr_scheduler.LRScheduler,
    ema: dict[str, Any] | None = None,
) -> int:
    """Restore a state saved by `save_training_state`; returns the step to continue from (0 if none)."""
    path = folder / CHECKPOINT_NAME
    if not path.exists():
        return 0
    state = torch.load(path, map_location="cpu", weights_only=False)
    for name, model in models.items():
        model.load_state_dict(state["models"][name])
    optimizer.load_state_dict(state["optimizer"])
    lr_scheduler.load_state_dict(state["lr_scheduler"])
    for name, e in (ema or {}).items():
        e.load_state_dict(state["ema"][name])
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"])
