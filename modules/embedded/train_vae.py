"""Stage 1: train the AutoencoderKL on world renders and set its latent scaling factor."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from diffusers import AutoencoderKL

from modules.embedded.config import Recipe, build_vae
from modules.embedded.pool import ScenePool, batch_indices, step_generator
from modules.training.autoencoder_training import autoencoder_loss, measure_scaling_factor, reconstruction_mse
from modules.training.loop import StepFn, TrainingRun, progress_log
from modules.training.precision import cpu_bf16_autocast, describe_cpu_bf16


def _held_out_batches(pool: ScenePool, count: int = 512, batch: int = 64) -> list[torch.Tensor]:
    """The first `count` pool images in batches: what the scaling factor is measured on."""
    count = min(len(pool), count)
    return [pool.pixels(torch.arange(start, min(start + batch, count))) for start in range(0, count, batch)]


def random_crop(pixels: torch.Tensor, crop: int, generator: torch.Generator, grid: int = 8) -> torch.Tensor:
    """One random `crop`×`crop` window (aligned to the latent `grid`) per image; the VAE is fully convolutional."""
    size = pixels.shape[-1]
    if crop >= size:
        return pixels
    offsets = torch.randint(0, (size - crop) // grid + 1, (pixels.shape[0], 2), generator=generator) * grid
    return torch.stack([p[:, y : y + crop, x : x + crop] for p, (y, x) in zip(pixels, offsets.tolist())])


def _run_stage(run: TrainingRun, step: StepFn, recipe: Recipe, stage: str, log: bool,
               tick: Callable[[], None] | None) -> None:
    """Run a VAE stage's steps under the recipe's precision (`Recipe.vae_bf16`), logging which one this CPU gives;
    `tick` is called at every log step, in the training thread (train_all uses it to take a freed core)."""
    if log:
        print(f"[{stage}] {describe_cpu_bf16(recipe.vae_bf16)}", flush=True)

    def step_in_precision(i: int) -> tuple[torch.Tensor, dict[str, float]]:
        with cpu_bf16_autocast(recipe.vae_bf16):
            return step(i)

    run.run(step_in_precision, on_log=progress_log(stage, log, tick))


def train_vae(
    pool: ScenePool, work_dir: Path, recipe: Recipe, log: bool = True, tick: Callable[[], None] | None = None
) -> AutoencoderKL:
    """Train (or resume) the VAE in `work_dir/vae-train`; saves the final model to `work_dir/vae`."""
    torch.manual_seed(recipe.seed)
    vae = build_vae(recipe.vae_config)
    run = TrainingRun(models={"vae": vae}, config=recipe.vae_loop, work_dir=work_dir / "vae-train")

    def step(i: int) -> tuple[torch.Tensor, dict[str, float]]:
        pixels = pool.pixels(batch_indices(len(pool), recipe.vae_batch, seed=recipe.seed + 11, step=i))
        generator = step_generator(recipe.seed + 1, i)
        pixels = random_crop(pixels, recipe.vae_crop, generator)
        out = autoencoder_loss(vae, pixels, kl_weight=recipe.vae_kl_weight, foreground_weight=recipe.vae_foreground_weight,
                               generator=generator)
        return out.loss, {"mse": out.reconstruction, "kl": out.kl}

    _run_stage(run, step, recipe, "vae", log, tick)
    vae.eval()
    held_out = _held_out_batches(pool)
    scale = measure_scaling_factor(vae, held_out)
    vae.register_to_config(scaling_factor=scale)
    vae.save_pretrained(work_dir / "vae")
    if log:
        print(f"[vae] scaling_factor={scale:.4f} recon_mse={reconstruction_mse(vae, held_out[:2]):.5f}", flush=True)
    return vae


def refine_vae(
    pool: ScenePool, work_dir: Path, recipe: Recipe, log: bool = True, tick: Callable[[], None] | None = None
) -> AutoencoderKL:
    """Continue the whole stage-1 VAE (`work_dir/vae`) with an edge term added to the loss (sharper outlines of
    small shapes); re-measures the scaling factor and saves `work_dir/vae-refined`, the latent space the UNet learns."""
    torch.manual_seed(recipe.seed + 3)
    vae = AutoencoderKL.from_pretrained(work_dir / "vae")
    vae.train().requires_grad_(True)
    run = TrainingRun(models={"vae": vae}, config=recipe.vae_refine_loop, work_dir=work_dir / "vae-refine-train")

    def step(i: int) -> tuple[torch.Tensor, dict[str, float]]:
        pixels = pool.pixels(batch_indices(len(pool), recipe.vae_batch, seed=recipe.seed + 33, step=i))
        generator = step_generator(recipe.seed + 3, i)
        out = autoencoder_loss(vae, pixels, kl_weight=recipe.vae_kl_weight, foreground_weight=recipe.vae_foreground_weight,
                               edge_weight=recipe.vae_edge_weight, generator=generator)
        return out.loss, {"mse": out.reconstruction, "kl": out.kl}

    _run_stage(run, step, recipe, "vae-refine", log, tick)
    vae.eval()
    held_out = _held_out_batches(pool)
    vae.register_to_config(scaling_factor=measure_scaling_factor(vae, held_out))
    vae.save_pretrained(work_dir / "vae-refined")
    return vae


def latent_vae_dir(work_dir: Path) -> Path:
    """The VAE whose encoder defines the UNet's latent space: the refined one when that stage has run."""
    return work_dir / "vae-refined" if (work_dir / "vae-refined").exists() else work_dir / "vae"


def finetune_decoder(
    pool: ScenePool, work_dir: Path, recipe: Recipe, log: bool = True, tick: Callable[[], None] | None = None
) -> AutoencoderKL:
    """Sharpen the decoder of `work_dir/vae` with the encoder frozen (the latent space and its scaling factor
    stay exactly those the UNet is trained on, as in SD's decoder-only VAE fine-tunes); saves `work_dir/vae-decoder`."""
    torch.manual_seed(recipe.seed + 5)
    vae = AutoencoderKL.from_pretrained(latent_vae_dir(work_dir))
    vae.requires_grad_(False)
    vae.decoder.requires_grad_(True)
    vae.post_quant_conv.requires_grad_(True)
    run = TrainingRun(models={"vae": vae}, config=recipe.decoder_loop, work_dir=work_dir / "vae-decoder-train")

    def step(i: int) -> tuple[torch.Tensor, dict[str, float]]:
        pixels = pool.pixels(batch_indices(len(pool), recipe.vae_batch, seed=recipe.seed + 55, step=i))
        generator = step_generator(recipe.seed + 5, i)
        out = autoencoder_loss(vae, pixels, kl_weight=0.0, foreground_weight=recipe.vae_foreground_weight,
                               edge_weight=recipe.vae_edge_weight, generator=generator)
        return out.loss, {"mse": out.reconstruction}

    _run_stage(run, step, recipe, "vae-decoder", log, tick)
    vae.eval()
    vae.save_pretrained(work_dir / "vae-decoder")
    return vae


def final_vae_dir(work_dir: Path) -> Path:
    """The VAE to ship: the decoder-refined one when that stage has run, else the latent VAE."""
    return work_dir / "vae-decoder" if (work_dir / "vae-decoder").exists() else latent_vae_dir(work_dir)
