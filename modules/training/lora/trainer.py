"""The LoRA training loop on a checkpoint's UNet (SD 1.x and 2.x; epsilon and v-prediction).

Deterministic by construction: the adapter starts from weights drawn under the request's seed, and step
``s`` draws its batch, noise and timesteps from a generator seeded by ``(seed, s)``. The optimizer and LR
schedule are saved with the adapter, so a run stopped after any checkpoint and resumed reaches the same
weights as a run that never stopped (``tests/test_train_lora.py``). The VAE and text encoder are frozen:
latents and prompt embeddings are computed once. Between steps the loop honours pause (generation first),
stop (the session is saved; the job can be resumed) and reports progress with the loss.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import torch
import torch.nn.functional as F

from modules.training.lora.dataset import TrainingImage
from modules.training.lora.errors import TrainingError
from modules.training.lora.request import TrainLoraRequest
from modules.training.lora.session import Session
from modules.training.sampling import model_scale, render_samples

if TYPE_CHECKING:
    from modules.jobs.progress import JobControl
    from modules.models.types import LoadedModel

#: the UNet layers the adapter wraps (diffusers' DreamBooth-LoRA recipe)
TARGET_MODULES = ["to_k", "to_q", "to_v", "to_out.0"]


@dataclass
class TrainingOutcome:
    steps_done: int
    last_step: int
    stopped: bool
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


def check_trainable(model: "LoadedModel") -> None:
    pipe = model.pipeline
    if getattr(pipe, "unet", None) is None or getattr(pipe, "text_encoder", None) is None:
        raise TrainingError(f"LoRA training needs a UNet model with a CLIP text encoder; {model.family.label} "
                            "has none")
    if getattr(pipe, "text_encoder_2", None) is not None:
        raise TrainingError("LoRA training of SDXL is not offered yet: pick an SD 1.x or 2.x checkpoint")


def encode_latents(model: "LoadedModel", images: list[TrainingImage], seed: int) -> torch.Tensor:
    """The latents of every image (one sample of the VAE's posterior per image, seeded by ``seed + index``)."""
    pipe = model.pipeline
    device = pipe.device
    latents = []
    with torch.no_grad():
        for index, image in enumerate(images):
            generator = torch.Generator("cpu").manual_seed(seed + index)
            dist = pipe.vae.encode(image.pixels.unsqueeze(0).to(device, pipe.vae.dtype)).latent_dist
            sample = dist.mean + dist.std * torch.randn(dist.mean.shape, generator=generator).to(device, dist.mean.dtype)
            latents.append(sample * pipe.vae.config.scaling_factor)
    return torch.cat(latents).to(pipe.unet.dtype)


def encode(model: "LoadedModel", images: list[TrainingImage], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(latents, prompt embeddings) of every image, computed once with the frozen VAE and text encoder."""
    pipe = model.pipeline
    latents = encode_latents(model, images, seed)
    with torch.no_grad():
        embeds = [pipe.encode_prompt(image.caption, pipe.device, 1, False)[0] for image in images]
    return latents, torch.cat(embeds).to(pipe.unet.dtype)


def seeded_batch(seed: int, step: int, latents: torch.Tensor, batch_size: int, noise_scheduler: Any,
                 prediction_type: str, device: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Step ``step``'s (image indices, noisy latents, timesteps, target), drawn from a generator seeded by
    (seed, step) alone: what makes a resumed run equal a straight one."""
    generator = torch.Generator("cpu").manual_seed(seed * 1_000_003 + step)
    index = torch.randint(len(latents), (batch_size,), generator=generator)
    clean = latents[index]
    noise = torch.randn(clean.shape, generator=generator).to(device, clean.dtype)
    total = int(noise_scheduler.config.num_train_timesteps)
    timesteps = torch.randint(0, total, (batch_size,), generator=generator).to(device)
    noisy = noise_scheduler.add_noise(clean, noise, timesteps)
    target = noise if prediction_type == "epsilon" else noise_scheduler.get_velocity(clean, noise, timesteps)
    return index, noisy, timesteps, target


def add_adapter(unet: Any, rank: int, alpha: float, seed: int) -> list[torch.nn.Parameter]:
    from peft import LoraConfig

    unet.requires_grad_(False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet.add_adapter(LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian",
                                    target_modules=TARGET_MODULES))
    return [p for p in unet.parameters() if p.requires_grad]


def adapter_state(unet: Any) -> dict[str, torch.Tensor]:
    from peft import get_peft_model_state_dict

    return {k: v.detach().to("cpu").clone() for k, v in get_peft_model_state_dict(unet).items()}


def train(req: TrainLoraRequest, model: "LoadedModel", images: list[TrainingImage], session: Session,
          control: "JobControl", *, on_log: Callable[[int, float], None] | None = None) -> TrainingOutcome:
    """Train (or resume) the session's adapter up to ``req.steps``; the UNet keeps the adapter afterwards."""
    from diffusers import DDPMScheduler
    from peft import set_peft_model_state_dict

    check_trainable(model)
    started = time.perf_counter()
    pipe = model.pipeline
    unet = pipe.unet
    latents, embeds = encode(model, images, req.seed)
    noise_scheduler = DDPMScheduler.from_config(dict(model.scheduler_config), prediction_type=model.prediction_type)
    params = add_adapter(unet, req.rank, req.alpha, req.seed)
    optimizer = torch.optim.AdamW(params, lr=req.learning_rate, weight_decay=1e-2)
    warmup = max(1, min(20, req.steps // 10))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup))
    start = 0
    state = session.load_state()
    session.start(req)  # the latest request (steps may have changed): what Resume submits again
    if state is not None:
        set_peft_model_state_dict(unet, state["adapter"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start = int(state["step"])
        session.truncate_log(start)

    def save(step: int) -> None:
        session.save_state({"adapter": adapter_state(unet), "optimizer": optimizer.state_dict(),
                            "scheduler": scheduler.state_dict(), "step": step})

    control.begin(1, req.steps, text=f"training LoRA {req.name}")
    control.step(start)
    unet.train()
    outcome = TrainingOutcome(steps_done=0, last_step=start, stopped=False)
    device = pipe.device
    for step in range(start, req.steps):
        control.pause_point()
        if control.should_stop:
            outcome.stopped = True
            break
        index, noisy, timesteps, target = seeded_batch(req.seed, step, latents, req.batch_size, noise_scheduler,
                                                       model.prediction_type, device)
        prediction = unet(noisy, timesteps, encoder_hidden_states=embeds[index]).sample
        loss = F.mse_loss(prediction.float(), target.float())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        value = float(loss.detach())
        outcome.losses.append(value)
        outcome.steps_done += 1
        outcome.last_step = step + 1
        session.log({"step": step + 1, "loss": value, "lr": scheduler.get_last_lr()[0], "time": time.time()})
        control.progress.text = f"training LoRA {req.name} · loss {value:.4f}"
        control.step(step + 1)
        if on_log is not None:
            on_log(step + 1, value)
        if (step + 1) % req.checkpoint_every == 0:
            save(step + 1)
        if req.sample_every and (step + 1) % req.sample_every == 0:
            control.progress.text = f"training LoRA {req.name} · sample images at step {step + 1}"
            render_samples(pipe, req.samples(), seed=req.seed, size=int(latents.shape[-1]) * model_scale(pipe),
                           steps=req.sample_steps, folder=session.samples_dir, step=step + 1)
            unet.train()
    unet.eval()
    save(outcome.last_step)
    outcome.seconds = time.perf_counter() - started
    return outcome
