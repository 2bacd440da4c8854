"""Dimensions and training recipe of the embedded default models (atelier-shapes-v1)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from modules.training.loop import LoopConfig

RESOLUTION = 64
# The SD 1.x tokenizer settings the loader uses (real CLIP BPE ids, padded with <|endoftext|> to 77).
SD1_TOKENIZER_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "families" / "sd1" / "tokenizer"
HELD_OUT_SHAPES: tuple[str, ...] = ("star",)

VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [16, 32, 64, 64],
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 8,
    "sample_size": RESOLUTION,
}

TEXT_ENCODER_CONFIG: dict[str, Any] = {
    "vocab_size": 49408,
    "hidden_size": 64,
    "intermediate_size": 256,
    "num_hidden_layers": 3,
    "num_attention_heads": 1,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "projection_dim": 64,
    "bos_token_id": 49406,
    "eos_token_id": 49407,
    "pad_token_id": 49407,
}

UNET_CONFIG: dict[str, Any] = {
    "sample_size": RESOLUTION // 8,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [64, 128, 128],
    "layers_per_block": 1,
    "cross_attention_dim": TEXT_ENCODER_CONFIG["hidden_size"],
    "attention_head_dim": 4,
    "norm_num_groups": 32,
}


@dataclass(frozen=True)
class Recipe:
    """Model dimensions, step counts, batch sizes and learning rates of each stage."""

    vae_config: dict[str, Any] = field(default_factory=lambda: dict(VAE_CONFIG))
    text_encoder_config: dict[str, Any] = field(default_factory=lambda: dict(TEXT_ENCODER_CONFIG))
    unet_config: dict[str, Any] = field(default_factory=lambda: dict(UNET_CONFIG))
    pool_size: int = 20000
    two_shape_prob: float = 0.15
    vae_loop: LoopConfig = LoopConfig(steps=1500, learning_rate=1e-3, warmup_steps=50, ema_decay=None,
                                      log_every=50, checkpoint_every=200)
    decoder_loop: LoopConfig = LoopConfig(steps=2000, learning_rate=5e-4, warmup_steps=50, ema_decay=None,
                                          log_every=50, checkpoint_every=200)
    # True: after the latent VAE, sharpen its decoder alone (`vae_decoder`, encoder frozen) in lane B, beside the
    # UNet. Off since stop 20: on the stop-19 model, shipping the refined VAE's own decoder instead of the
    # decoder-refined one scored shape+colour 86% vs 87% (192 vs 194 of 224 images, same UNet, judge and seeds),
    # position 100% either way; the stage cost 2000 steps (15 min of one core) that lane A needs.
    refine_decoder: bool = False
    vae_refine_loop: LoopConfig = LoopConfig(steps=2000, learning_rate=5e-4, warmup_steps=50, ema_decay=None,
                                             log_every=50, checkpoint_every=200)
    # True: the edge-loss refinement continues the whole VAE (encoder too) before the UNet trains on its latents,
    # on the critical path (lane A, 17 min on one core). False: the UNet trains on the stage-1 VAE's latent space
    # (then set `refine_decoder`, so the edge loss at least sharpens the decoder, in lane B).
    refine_latent_vae: bool = True
    vae_edge_weight: float = 2.0
    # The three VAE stages train under bf16 autocast where the CPU computes bf16 natively (AMX / AVX-512 BF16:
    # 0.43 s a refinement step against 0.66-0.73 s in fp32 on the 2-core machine), fp32 elsewhere
    # (`modules.training.precision`). The shipped model was trained so: shape+colour 87% vs 84% for the fp32 build.
    vae_bf16: bool = True
    vae_batch: int = 16
    vae_crop: int = 64
    vae_foreground_weight: float = 5.0
    vae_kl_weight: float = 1e-5
    # 4000 steps (stop 20; 4600 up to stop 19, 87%) with the text encoder pretrained and frozen (0.65 s a step
    # against 0.74 with it trained jointly). Measured on the fp32-VAE build: 3000 steps 75%, 4600 steps 84%.
    # The joint recipe: 4400 steps timed at 84 min (4600 took 92), shape+colour 77% vs 79% (seeds 0-7); 83% at
    # 4600 steps against 42% at 2400 (seeds 0-3). See the model card and docs/benchmarks.md.
    t2i_loop: LoopConfig = LoopConfig(steps=4000, learning_rate=8e-4, warmup_steps=150, ema_decay=0.999,
                                      log_every=50, checkpoint_every=250)
    t2i_batch: int = 64
    # Text encoder pretrained to read every caption label (train_text_encoder), then frozen for the UNet, as SD's
    # CLIP is; False trains it from scratch jointly with the UNet (the recipe of the releases up to v1).
    pretrain_text_encoder: bool = True
    text_encoder_loop: LoopConfig = LoopConfig(steps=600, learning_rate=1e-3, warmup_steps=50, ema_decay=None,
                                               log_every=50, checkpoint_every=200)
    text_encoder_batch: int = 128
    caption_dropout: float = 0.1
    caption_position_prob: float = 0.8
    # Epsilon prediction with min-SNR weighting (gamma 5). Measured side by side on the same VAE, pool and step
    # count (bench prompts, 4 seeds): shape+colour 50% against 16% for v-prediction with the plain v loss;
    # position at chance for both (4% and 10%). A zero-terminal-SNR schedule (v-prediction) did not move
    # position either (8-10%) and lost shape (9-13%). See the model card.
    t2i_prediction: str = "epsilon"
    snr_gamma: float | None = 5.0
    snr_weighting: str = "min_snr"
    zero_terminal_snr: bool = False
    # (portion, multiplier): sample the noisiest `portion` of timesteps `multiplier` times as often; None = uniform.
    # Measured with (0.4, 3.0) against the shipped recipe: position 8% vs 4%, shape+colour 27% vs 50%; left off.
    late_timestep_bias: tuple[float, float] | None = None
    seed: int = 0


def build_vae(config: dict[str, Any] = VAE_CONFIG) -> AutoencoderKL:
    """A fresh (random-init) 8x-downsampling AutoencoderKL."""
    return AutoencoderKL(**config)


def build_text_encoder(config: dict[str, Any] = TEXT_ENCODER_CONFIG) -> CLIPTextModel:
    """A fresh CLIP text encoder (the real 49408-token vocabulary by default)."""
    return CLIPTextModel(CLIPTextConfig(**config))


def build_unet(config: dict[str, Any] = UNET_CONFIG) -> UNet2DConditionModel:
    """A fresh SD-style conditional UNet (8x8 latents by default)."""
    return UNet2DConditionModel(**config)
