"""A generic latent-diffusion training step (epsilon / v-prediction), reusable by DreamBooth and LoRA.

Models come in as objects; nothing here knows about the data set they are trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, ControlNetModel, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from modules.models.prediction import ZERO_TERMINAL_SNR


def sd15_noise_scheduler(prediction_type: str = "epsilon", zero_terminal_snr: bool = False) -> DDPMScheduler:
    """The SD 1.x training schedule: 1000 steps, scaled_linear betas 0.00085..0.012, no sample clipping.

    With `zero_terminal_snr` the betas are rescaled so the last step is pure noise (Lin et al. 2023,
    "Common Diffusion Noise Schedules and Sample Steps Are Flawed"); it needs v-prediction and "trailing"
    timestep spacing at sampling time.
    """
    if zero_terminal_snr and prediction_type != "v_prediction":
        raise ValueError("a zero-terminal-SNR schedule needs v-prediction (epsilon is undefined at the last step)")
    extra = dict(ZERO_TERMINAL_SNR) if zero_terminal_snr else {}
    return DDPMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        steps_offset=1,
        prediction_type=prediction_type,
        **extra,
    )


def later_timestep_weights(num_train_timesteps: int, portion: float, multiplier: float) -> torch.Tensor:
    """Sampling weights over timesteps with the last `portion` (the noisiest) weighted `multiplier` times the
    rest, as diffusers' training scripts' `--timestep_bias_strategy later`: more steps where the layout forms."""
    if not 0.0 < portion < 1.0 or multiplier <= 0:
        raise ValueError("portion must be in (0, 1) and multiplier > 0")
    weights = torch.ones(num_train_timesteps)
    weights[int(num_train_timesteps * (1.0 - portion)):] *= multiplier
    return weights / weights.sum()


def tokenize(tokenizer: CLIPTokenizer, prompts: list[str]) -> torch.Tensor:
    """Token ids padded to the tokenizer's max length (77 for CLIP), as SD pipelines do."""
    return tokenizer(
        prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids


def encode_prompts(tokenizer: CLIPTokenizer, text_encoder: CLIPTextModel, prompts: list[str]) -> torch.Tensor:
    """Last hidden states of the text encoder for `prompts` (the UNet's cross-attention context)."""
    ids = tokenize(tokenizer, prompts).to(text_encoder.device)
    return text_encoder(ids)[0]


def latents_from_pixels(
    vae: AutoencoderKL, pixel_values: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Sampled VAE latents scaled by the VAE's `scaling_factor` (pixels in [-1, 1])."""
    with torch.no_grad():
        posterior = vae.encode(pixel_values).latent_dist
        return posterior.sample(generator=generator) * vae.config.scaling_factor


@dataclass(frozen=True)
class DiffusionLoss:
    """The loss to back-propagate and its parts (detached floats for logging)."""

    loss: torch.Tensor
    instance: float
    prior: float | None


SNR_WEIGHTINGS = ("min_snr", "min_snr_plus_one")


def _snr_weights(scheduler: DDPMScheduler, timesteps: torch.Tensor, gamma: float, weighting: str) -> torch.Tensor:
    """Per-sample loss weights. "min_snr" (Hang et al. 2023) weighs the clean-image error by min(SNR, gamma);
    "min_snr_plus_one" (v-prediction only) by min(SNR, gamma) + 1, so the noisiest steps (SNR -> 0), which
    decide the composition, keep a weight of 1 instead of vanishing."""
    alphas_cumprod = scheduler.alphas_cumprod.to(timesteps.device)[timesteps]
    snr = alphas_cumprod / (1.0 - alphas_cumprod)
    clipped = torch.clamp(snr, max=gamma)
    v_prediction = scheduler.config.prediction_type == "v_prediction"
    if weighting == "min_snr_plus_one":
        if not v_prediction:
            raise ValueError("min_snr_plus_one weighting is defined for v-prediction only")
        return (clipped + 1.0) / (snr + 1.0)
    if weighting != "min_snr":
        raise ValueError(f"unknown SNR weighting {weighting!r}; expected one of {SNR_WEIGHTINGS}")
    if v_prediction:
        return clipped / (snr + 1.0)
    return clipped / snr


def diffusion_loss(
    unet: UNet2DConditionModel,
    scheduler: DDPMScheduler,
    latents: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    snr_gamma: float | None = None,
    snr_weighting: str = "min_snr",
    timestep_weights: torch.Tensor | None = None,
    controlnet: ControlNetModel | None = None,
    controlnet_cond: torch.Tensor | None = None,
    with_prior: bool = False,
    prior_loss_weight: float = 1.0,
) -> DiffusionLoss:
    """Noise `latents` at random timesteps and score the UNet's prediction against the scheduler's target.

    With `with_prior`, the batch is [instance; class] halves (one forward pass, chunked after), as in
    diffusers' DreamBooth: loss = mse(instance) + prior_loss_weight * mse(class).
    With `controlnet`, its residuals (computed from `controlnet_cond`, pixels in [0, 1]) are added to the UNet.
    """
    batch = latents.shape[0]
    noise = torch.randn(latents.shape, generator=generator, device=latents.device, dtype=latents.dtype)
    if timestep_weights is None:
        timesteps = torch.randint(
            0, scheduler.config.num_train_timesteps, (batch,), generator=generator, device=latents.device
        )
    else:
        timesteps = torch.multinomial(timestep_weights, batch, replacement=True, generator=generator).to(latents.device)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    extra: dict[str, object] = {}
    if controlnet is not None:
        if controlnet_cond is None:
            raise ValueError("controlnet_cond is required with a controlnet")
        down, mid = controlnet(
            noisy, timesteps, encoder_hidden_states=encoder_hidden_states, controlnet_cond=controlnet_cond,
            return_dict=False,
        )
        extra = {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
    prediction = unet(noisy, timesteps, encoder_hidden_states, **extra).sample
    if scheduler.config.prediction_type == "v_prediction":
        target = scheduler.get_velocity(latents, noise, timesteps)
    else:
        target = noise
    per_sample = F.mse_loss(prediction.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
    if snr_gamma is not None:
        per_sample = per_sample * _snr_weights(scheduler, timesteps, snr_gamma, snr_weighting)
    if not with_prior:
        loss = per_sample.mean()
        return DiffusionLoss(loss=loss, instance=float(loss.detach()), prior=None)
    instance, prior = torch.chunk(per_sample, 2, dim=0)
    loss = instance.mean() + prior_loss_weight * prior.mean()
    return DiffusionLoss(loss=loss, instance=float(instance.mean().detach()), prior=float(prior.mean().detach()))
