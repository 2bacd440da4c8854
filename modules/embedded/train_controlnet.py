"""Stage 4: train a canny ControlNet (initialised from the trained UNet) with the base model frozen."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL, ControlNetModel, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from modules.embedded.canny import canny_tensor
from modules.embedded.pool import ScenePool, batch_indices, step_generator
from modules.embedded.train_t2i import pool_captions, pool_latents
from modules.training.loop import LoopConfig, TrainingRun, progress_log
from modules.embedded.train_vae import latent_vae_dir
from modules.training.noise_training import diffusion_loss, encode_prompts

CONDITIONING_CHANNELS: tuple[int, ...] = (16, 32, 64, 64)


@dataclass(frozen=True)
class ControlNetRecipe:
    """Steps, batch and caption dropout of the ControlNet run."""

    loop: LoopConfig = LoopConfig(steps=1500, learning_rate=8e-4, warmup_steps=100, ema_decay=None,
                                  log_every=50, checkpoint_every=250)
    batch: int = 32
    caption_dropout: float = 0.3
    seed: int = 200


def build_controlnet(unet: UNet2DConditionModel) -> ControlNetModel:
    """A ControlNet copying the UNet's encoder, with a small 8x-downsampling conditioning embedding."""
    return ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=CONDITIONING_CHANNELS)


def train_controlnet(
    pool: ScenePool, work_dir: Path, cr: ControlNetRecipe = ControlNetRecipe(), log: bool = True,
    tick: Callable[[], None] | None = None,
) -> Path:
    """Train (or resume) in `work_dir/controlnet-train`; saves the ControlNet to `work_dir/controlnet`."""
    torch.manual_seed(cr.seed)
    t2i = work_dir / "t2i"
    vae = AutoencoderKL.from_pretrained(latent_vae_dir(work_dir)).eval().requires_grad_(False)
    unet = UNet2DConditionModel.from_pretrained(t2i / "unet").requires_grad_(False)
    text_encoder = CLIPTextModel.from_pretrained(t2i / "text_encoder").eval().requires_grad_(False)
    tokenizer = CLIPTokenizer.from_pretrained(t2i / "tokenizer")
    controlnet = build_controlnet(unet)
    scheduler = DDPMScheduler.from_pretrained(t2i / "scheduler")  # the base model's prediction type
    means, stds = pool_latents(vae, pool, work_dir)
    edges = canny_tensor(pool.images)
    scale = vae.config.scaling_factor
    run = TrainingRun(models={"controlnet": controlnet}, config=cr.loop, work_dir=work_dir / "controlnet-train")

    def step(i: int) -> tuple[torch.Tensor, dict[str, float]]:
        generator = step_generator(cr.seed, i)
        indices = batch_indices(len(pool), cr.batch, seed=cr.seed, step=i)
        latents = (means[indices] + stds[indices] * torch.randn(means[indices].shape, generator=generator)) * scale
        captions = pool_captions(pool, indices, seed=cr.seed, step=i, dropout=cr.caption_dropout)
        with torch.no_grad():
            context = encode_prompts(tokenizer, text_encoder, captions)
        out = diffusion_loss(unet, scheduler, latents, context, generator=generator, controlnet=controlnet,
                             controlnet_cond=edges[indices])
        return out.loss, {}

    run.run(step, on_log=progress_log("controlnet", log, tick))
    target = work_dir / "controlnet"
    controlnet.save_pretrained(target)
    return target
