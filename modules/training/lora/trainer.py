"""The LoRA training loop on a checkpoint's UNet (SD 1.x, 2.x and SDXL; epsilon and v-prediction), and
optionally on its text encoder(s).

Deterministic by construction: the adapters start from weights drawn under the request's seed, and step
``s`` draws its batch, noise and timesteps from a generator seeded by ``(seed, s)``. The optimizer and LR
schedule are saved with the adapters, so a run stopped after any checkpoint and resumed reaches the same
weights as a run that never stopped (``tests/test_train_lora.py``). The VAE is frozen (latents are
computed once); so are the text encoders unless ``train_text_encoder`` (then the captions go through their
adapters at every step; else their embeddings are computed once). SDXL is conditioned on both encoders,
the pooled embedding and the time ids (:mod:`.conditioning`). Between steps the loop honours pause
(generation first), stop (the session is saved; the job can be resumed) and reports progress with the
loss; loss, learning rate and sample images also go to TensorBoard in the session folder (:mod:`.tensorboard`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import torch
import torch.nn.functional as F

from modules.training.lora.conditioning import Captions, Conditioning, encode, frozen, is_sdxl, text_encoders, time_ids
from modules.training.lora.dataset import TrainingImage
from modules.training.lora.errors import TrainingError
from modules.training.lora.request import TrainLoraRequest
from modules.training.lora.session import Session
from modules.training.sampling import model_scale, render_samples

if TYPE_CHECKING:
    from modules.jobs.progress import JobControl
    from modules.models.types import LoadedModel
    from modules.training.distributed import Group

#: the UNet layers the adapter wraps (diffusers' DreamBooth-LoRA recipe)
TARGET_MODULES = ["to_k", "to_q", "to_v", "to_out.0"]
#: the text encoders' layers (diffusers' recipe with --train_text_encoder)
TEXT_TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "out_proj"]


@dataclass
class TrainingOutcome:
    steps_done: int
    last_step: int
    stopped: bool
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


def check_trainable(model: "LoadedModel") -> None:
    pipe = model.pipeline
    if getattr(pipe, "transformer", None) is not None and getattr(pipe, "unet", None) is None:
        raise TrainingError(f"LoRA training of {model.family.label} (a transformer model such as FLUX) is not "
                            "offered: pick an SD 1.x, 2.x or SDXL checkpoint")
    if getattr(pipe, "unet", None) is None or getattr(pipe, "text_encoder", None) is None:
        raise TrainingError(f"LoRA training needs a UNet model with a CLIP text encoder; {model.family.label} "
                            "has none (an SDXL refiner has only the second encoder: train the base model)")
    if getattr(pipe, "text_encoder_2", None) is not None and not is_sdxl(pipe):
        raise TrainingError(f"LoRA training of {model.family.label} is not offered: its UNet is not conditioned "
                            "like SDXL's base model")


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


def add_text_adapters(pipe: Any, rank: int, alpha: float, seed: int) -> dict[str, list[torch.nn.Parameter]]:
    """A LoRA adapter on each text encoder the captions go through (weights drawn under ``seed + 1``, ``+ 2``);
    component attribute -> its trainable parameters."""
    from peft import LoraConfig

    params: dict[str, list[torch.nn.Parameter]] = {}
    for offset, (attr, _, encoder) in enumerate(text_encoders(pipe), start=1):
        encoder.requires_grad_(False)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + offset)
            encoder.add_adapter(LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian",
                                           target_modules=TEXT_TARGET_MODULES))
        params[attr] = [p for p in encoder.parameters() if p.requires_grad]
    return params


def adapter_state(unet: Any) -> dict[str, torch.Tensor]:
    """The PEFT adapter weights of ``unet`` (or of a text encoder), on the CPU."""
    from peft import get_peft_model_state_dict

    return {k: v.detach().to("cpu").clone() for k, v in get_peft_model_state_dict(unet).items()}


def text_adapter_states(pipe: Any) -> dict[str, dict[str, torch.Tensor]]:
    """Component attribute -> adapter weights, for each text encoder that has a trained adapter."""
    return {attr: adapter_state(encoder) for attr, _, encoder in text_encoders(pipe)
            if getattr(encoder, "_hf_peft_config_loaded", False)}


def train(req: TrainLoraRequest, model: "LoadedModel", images: list[TrainingImage], session: Session,
          control: "JobControl", *, on_log: Callable[[int, float], None] | None = None,
          group: "Group | None" = None) -> TrainingOutcome:
    """Train (or resume) the session's adapters up to ``req.steps``; the UNet (and, with
    ``train_text_encoder``, the text encoders) keep them afterwards.

    ``group``: this process is one of several data-parallel workers (:mod:`modules.training.distributed`): it
    trains on its slice of each step's global batch, gradients are averaged over the workers, and only the
    lead (rank 0) writes TensorBoard and samples (its ``session`` writes; the others' write nothing)."""
    from diffusers import DDPMScheduler
    from peft import set_peft_model_state_dict

    from modules.training.lora.tensorboard import TensorBoardLog

    check_trainable(model)
    started = time.perf_counter()
    pipe = model.pipeline
    unet = pipe.unet
    latents = encode_latents(model, images, req.seed)
    size = int(latents.shape[-1]) * model_scale(pipe)
    captions = Captions.of(pipe, [image.caption for image in images])
    fixed = None if req.train_text_encoder else frozen(pipe, captions, images, size)
    image_time_ids = time_ids(pipe, images, size) if req.train_text_encoder else None
    noise_scheduler = DDPMScheduler.from_config(dict(model.scheduler_config), prediction_type=model.prediction_type)
    params = add_adapter(unet, req.rank, req.alpha, req.seed)
    groups: list[dict[str, Any]] = [{"params": params, "lr": req.learning_rate}]
    text_params = add_text_adapters(pipe, req.rank, req.alpha, req.seed) if req.train_text_encoder else {}
    for attr_params in text_params.values():
        groups.append({"params": attr_params, "lr": req.text_encoder_lr or req.learning_rate})
    trained = [p for group in groups for p in group["params"]]
    optimizer = torch.optim.AdamW(groups, lr=req.learning_rate, weight_decay=1e-2)
    warmup = max(1, min(20, req.steps // 10))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup))
    start = 0
    state = session.load_state()
    session.start(req)  # the latest request (steps may have changed): what Resume submits again
    if state is not None:
        set_peft_model_state_dict(unet, state["adapter"])
        for attr, adapter in (state.get("text_adapters") or {}).items():
            set_peft_model_state_dict(getattr(pipe, attr), adapter)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start = int(state["step"])
        session.truncate_log(start)

    def save(step: int) -> None:
        session.save_state({"adapter": adapter_state(unet), "text_adapters": text_adapter_states(pipe),
                            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step})

    def conditioning(index: torch.Tensor) -> dict[str, Any]:
        if fixed is not None:
            return fixed.unet_kwargs(index)
        embeds, pooled = encode(pipe, captions, index)
        picked_ids = image_time_ids[index] if image_time_ids is not None else None
        return Conditioning(embeds.to(unet.dtype), pooled.to(unet.dtype) if pooled is not None else None,
                            picked_ids).unet_kwargs()

    def train_mode() -> None:
        unet.train()
        for attr in text_params:
            getattr(pipe, attr).train()

    control.begin(1, req.steps, text=f"training LoRA {req.name}")
    control.step(start)
    train_mode()
    outcome = TrainingOutcome(steps_done=0, last_step=start, stopped=False)
    device = pipe.device
    lead = group is None or group.lead
    world = 1 if group is None else group.world_size
    board = TensorBoardLog(session.folder / "tensorboard", start) if lead else None  # rank 0 writes it
    try:
        for step in range(start, req.steps):
            control.pause_point()
            stop = control.should_stop if group is None else group.any(control.should_stop)
            if stop:
                outcome.stopped = True
                break
            # the global batch (batch_size per worker) as one process draws it; a worker takes its slice
            index, noisy, timesteps, target = seeded_batch(req.seed, step, latents, req.batch_size * world,
                                                           noise_scheduler, model.prediction_type, device)
            if group is not None:
                share = group.share(req.batch_size)
                index, noisy, timesteps, target = index[share], noisy[share], timesteps[share], target[share]
            prediction = unet(noisy, timesteps, **conditioning(index)).sample
            loss = F.mse_loss(prediction.float(), target.float())
            loss.backward()
            if group is not None:
                group.average_gradients(trained)
            torch.nn.utils.clip_grad_norm_(trained, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            value = float(loss.detach()) if group is None else group.mean(float(loss.detach()))
            lr = scheduler.get_last_lr()[0]
            outcome.losses.append(value)
            outcome.steps_done += 1
            outcome.last_step = step + 1
            ranks = {} if group is None else {"rank_images": group.gather_indices(index)}  # a collective: every rank
            session.log({"step": step + 1, "loss": value, "lr": lr, "time": time.time(), **ranks})
            if board is not None:
                board.scalars(step + 1, loss=value, lr=lr)
            control.progress.text = f"training LoRA {req.name} · loss {value:.4f}"
            control.step(step + 1)
            if on_log is not None:
                on_log(step + 1, value)
            if (step + 1) % req.checkpoint_every == 0:
                save(step + 1)
            if lead and req.sample_every and (step + 1) % req.sample_every == 0:
                control.progress.text = f"training LoRA {req.name} · sample images at step {step + 1}"
                written = render_samples(pipe, req.samples(), seed=req.seed, size=size, steps=req.sample_steps,
                                         folder=session.samples_dir, step=step + 1)
                if board is not None:
                    board.images(step + 1, written)
                train_mode()
    finally:
        if board is not None:
            board.close()
    unet.eval()
    for attr in text_params:
        getattr(pipe, attr).eval()
    save(outcome.last_step)
    outcome.seconds = time.perf_counter() - started
    return outcome
