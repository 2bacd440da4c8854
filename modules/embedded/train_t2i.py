"""Stage 2: train the text encoder and UNet jointly on world latents with informative captions."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import torch
from diffusers import AutoencoderKL
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import CLIPTextModel

from modules.embedded.config import SD1_TOKENIZER_CONFIG, Recipe, build_text_encoder, build_unet
from modules.embedded.pool import ScenePool, batch_indices, step_generator, step_rng
from modules.models.tokenizers import load_clip_tokenizer
from modules.training.loop import TrainingRun, progress_log
from modules.training.noise_training import diffusion_loss, encode_prompts, later_timestep_weights, sd15_noise_scheduler
from modules.world.captions import caption_scene


@torch.no_grad()
def encode_pool(vae: AutoencoderKL, pool: ScenePool, batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and std of every pool image (latents are re-sampled from them at each step)."""
    means, stds = [], []
    for start in range(0, len(pool), batch):
        posterior = vae.encode(pool.pixels(torch.arange(start, min(start + batch, len(pool))))).latent_dist
        means.append(posterior.mean)
        stds.append(posterior.std)
    return torch.cat(means), torch.cat(stds)


POOL_LATENTS = "pool-latents.safetensors"


def _latents_key(vae: AutoencoderKL, pool: ScenePool) -> str:
    """SHA-256 over the VAE's weights and the pool's renders: what `encode_pool`'s result depends on."""
    digest = hashlib.sha256()
    for name, tensor in sorted(vae.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().numpy().tobytes())
    digest.update(pool.images.numpy().tobytes())
    return digest.hexdigest()


def pool_latents(vae: AutoencoderKL, pool: ScenePool, work_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """`encode_pool`, kept in `work_dir/pool-latents.safetensors` for the next stage that needs the same VAE and pool
    (the ControlNet after the UNet: 20000 encodings are about 1.5 min of the critical path). A file made from other
    weights or renders is ignored and replaced."""
    path = work_dir / POOL_LATENTS
    key = _latents_key(vae, pool)
    if path.exists():
        with safe_open(str(path), framework="pt") as handle:
            if (handle.metadata() or {}).get("key") == key:
                return handle.get_tensor("means"), handle.get_tensor("stds")
    means, stds = encode_pool(vae, pool)
    work_dir.mkdir(parents=True, exist_ok=True)
    save_file({"means": means.contiguous(), "stds": stds.contiguous()}, str(path), metadata={"key": key})
    return means, stds


def pool_captions(
    pool: ScenePool, indices: torch.Tensor, *, seed: int, step: int, dropout: float, p_position: float = 0.6
) -> list[str]:
    """Captions for a batch; a `dropout` share is the empty prompt (for classifier-free guidance)."""
    rng = step_rng(seed, step, "caption")
    captions = []
    for index in indices.tolist():
        caption = caption_scene(pool.scenes[index], rng, p_position=p_position)
        captions.append("" if rng.random() < dropout else caption)
    return captions


def _text_encoder(work_dir: Path, recipe: Recipe) -> CLIPTextModel:
    """The pretrained encoder of `train_text_encoder`, frozen; or a fresh one trained here with the UNet."""
    if not recipe.pretrain_text_encoder:
        return build_text_encoder(recipe.text_encoder_config)
    pretrained = work_dir / "text-encoder"
    if not pretrained.exists():
        raise FileNotFoundError(f"{pretrained} is missing: run the text_encoder stage first")
    return CLIPTextModel.from_pretrained(pretrained).eval().requires_grad_(False)


def train_t2i(
    pool: ScenePool, vae: AutoencoderKL, work_dir: Path, recipe: Recipe, log: bool = True,
    tick: Callable[[], None] | None = None,
) -> Path:
    """Train (or resume) the UNet (and the text encoder, unless pretrained) in `work_dir/t2i-train`; saves EMA
    weights to `work_dir/t2i`.

    `tick` is called at every log step, in the training thread (train_all uses it to take a freed core).
    """
    torch.manual_seed(recipe.seed)
    vae.eval().requires_grad_(False)
    tokenizer = load_clip_tokenizer(SD1_TOKENIZER_CONFIG, work_dir / "cache")
    text_encoder, unet = _text_encoder(work_dir, recipe), build_unet(recipe.unet_config)
    trained = {"unet": unet} if recipe.pretrain_text_encoder else {"unet": unet, "text_encoder": text_encoder}
    scheduler = sd15_noise_scheduler(recipe.t2i_prediction, recipe.zero_terminal_snr)
    weights = (later_timestep_weights(scheduler.config.num_train_timesteps, *recipe.late_timestep_bias)
               if recipe.late_timestep_bias else None)
    means, stds = pool_latents(vae, pool, work_dir)
    scale = vae.config.scaling_factor
    run = TrainingRun(models=trained, config=recipe.t2i_loop,
                      work_dir=work_dir / "t2i-train")

    def step(i: int) -> tuple[torch.Tensor, dict[str, float]]:
        generator = step_generator(recipe.seed + 2, i)
        indices = batch_indices(len(pool), recipe.t2i_batch, seed=recipe.seed + 22, step=i)
        latents = (means[indices] + stds[indices] * torch.randn(means[indices].shape, generator=generator)) * scale
        captions = pool_captions(pool, indices, seed=recipe.seed, step=i, dropout=recipe.caption_dropout,
                                 p_position=recipe.caption_position_prob)
        with torch.set_grad_enabled(not recipe.pretrain_text_encoder):
            context = encode_prompts(tokenizer, text_encoder, captions)
        out = diffusion_loss(unet, scheduler, latents, context, generator=generator, snr_gamma=recipe.snr_gamma,
                             snr_weighting=recipe.snr_weighting, timestep_weights=weights)
        return out.loss, {}

    run.run(step, on_log=progress_log("t2i", log, tick))
    run.copy_ema_to_models()
    target = work_dir / "t2i"
    unet.save_pretrained(target / "unet")
    text_encoder.save_pretrained(target / "text_encoder")
    tokenizer.save_pretrained(target / "tokenizer")
    scheduler.save_pretrained(target / "scheduler")
    return target
