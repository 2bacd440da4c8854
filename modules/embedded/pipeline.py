"""Build a diffusers StableDiffusionPipeline from the embedded model's trained component folders."""

from __future__ import annotations

import json

from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    ControlNetModel,
    DPMSolverMultistepScheduler,
    StableDiffusionControlNetPipeline,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from PIL import Image
from transformers import CLIPTextModel, CLIPTokenizer

from modules.embedded.train_vae import final_vae_dir
from modules.training.noise_training import sd15_noise_scheduler


def sampling_scheduler(prediction_type: str = "epsilon", zero_terminal_snr: bool = False) -> DPMSolverMultistepScheduler:
    """DPM++ 2M over the SD 1.x training schedule (the studio's usual default sampler)."""
    return DPMSolverMultistepScheduler.from_config(sd15_noise_scheduler(prediction_type, zero_terminal_snr).config)


def _scheduler_of(config_path: Path) -> DPMSolverMultistepScheduler:
    config = json.loads(config_path.read_text())
    return sampling_scheduler(config["prediction_type"], bool(config.get("rescale_betas_zero_snr", False)))


def pipeline_from_work_dir(work_dir: Path) -> StableDiffusionPipeline:
    """The text-to-image pipeline from the final VAE (see `final_vae_dir`) and `work_dir/t2i/{unet,text_encoder,tokenizer}`."""
    t2i = work_dir / "t2i"
    return StableDiffusionPipeline(
        vae=AutoencoderKL.from_pretrained(final_vae_dir(work_dir)),
        text_encoder=CLIPTextModel.from_pretrained(t2i / "text_encoder"),
        tokenizer=CLIPTokenizer.from_pretrained(t2i / "tokenizer"),
        unet=UNet2DConditionModel.from_pretrained(t2i / "unet"),
        scheduler=_scheduler_of(t2i / "scheduler" / "scheduler_config.json"),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def with_controlnet(pipe: StableDiffusionPipeline, controlnet: ControlNetModel) -> StableDiffusionControlNetPipeline:
    """The same components plus a ControlNet."""
    return StableDiffusionControlNetPipeline(
        vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer, unet=pipe.unet,
        controlnet=controlnet, scheduler=pipe.scheduler, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )


def generate(
    pipe: StableDiffusionPipeline,
    prompts: list[str],
    seeds: list[int],
    *,
    steps: int = 20,
    guidance: float = 7.0,
    size: int = 64,
    **extra: object,
) -> list[Image.Image]:
    """One image per (prompt, seed) pair, each seeded by its own CPU generator."""
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    with torch.no_grad():
        return pipe(
            prompts, num_inference_steps=steps, guidance_scale=guidance, height=size, width=size,
            generator=generators, **extra,
        ).images
