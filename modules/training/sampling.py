"""Sample images during training: fixed prompts and seeds rendered with the model being trained.

They are drawn from their own generators (``seed + index``) inside :func:`torch.random.fork_rng`, in
eval mode and without gradients, so a run with samples trains exactly as one without (the training
draws each step from its own seeded generator; ``tests/test_train_lora.py``). Files:
``<session>/samples/<step:06d>-<index>.png``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

import torch

SAMPLE_NAME = re.compile(r"^(\d{6})-(\d+)\.png$")


def model_scale(pipe: Any) -> int:
    """Pixels per latent pixel of the pipeline's VAE (8 for SD)."""
    return int(getattr(pipe, "vae_scale_factor", 8) or 8)


def render_samples(pipe: Any, prompts: Sequence[str], *, seed: int, size: int, steps: int, folder: Path,
                   step: int, guidance_scale: float = 7.0) -> list[Path]:
    """Render each prompt once (seed ``seed + index``) at ``size``; returns the written files."""
    folder.mkdir(parents=True, exist_ok=True)
    unet = getattr(pipe, "unet", None)
    written: list[Path] = []
    if hasattr(pipe, "set_progress_bar_config"):
        pipe.set_progress_bar_config(disable=True)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        if unet is not None:
            unet.eval()
        for index, prompt in enumerate(prompts):
            generator = torch.Generator("cpu").manual_seed(int(seed) + index)
            image = pipe(prompt, height=size, width=size, num_inference_steps=steps, guidance_scale=guidance_scale,
                         generator=generator).images[0]
            path = folder / f"{step:06d}-{index}.png"
            partial = path.with_name(path.name + ".partial.png")
            image.save(partial)
            partial.replace(path)
            written.append(path)
    return written


def list_samples(folder: Path) -> list[tuple[Path, int, int]]:
    """(file, step, prompt index) of a session's samples, newest step first."""
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = SAMPLE_NAME.match(path.name)
        if match:
            found.append((path, int(match.group(1)), int(match.group(2))))
    return sorted(found, key=lambda item: (-item[1], item[2]))
