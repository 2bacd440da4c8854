"""The DreamBooth loop: a full fine-tune of the UNet (and optionally the text encoder), VAE frozen.

Each step draws ``batch_size`` instance latents and as many class latents (prior preservation), puts them
in one batch for one forward pass, splits the prediction and scores ``mse(instance) + prior_loss_weight *
mse(class)`` (diffusers' ``train_dreambooth.py``). The images are encoded once (the VAE is frozen); prompts
are encoded every step, with gradients while the text encoder trains.

Deterministic by construction, as the LoRA trainer: step ``s`` draws its batches, noise and timesteps from
generators seeded by (seed, s) (:func:`modules.training.lora.trainer.seeded_batch`; the class batch from
its own stream), and anything else random in a step (dropout) from the torch RNG seeded by (seed, s). The
weights, optimizer and EMA are saved with the step, so a run stopped after any checkpoint and resumed
reaches the same weights as one that never stopped (``tests/test_train_dreambooth.py``). Each step's loss,
with its instance and prior parts, goes to the session's loss log and to TensorBoard with the samples.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import torch
import torch.nn.functional as F

from modules.training.dreambooth.options import autocast, make_optimizer
from modules.training.dreambooth.request import TrainDreamboothRequest
from modules.training.lora.dataset import TrainingImage
from modules.training.lora.errors import TrainingError
from modules.training.lora.session import Session
from modules.training.lora.tensorboard import TensorBoardLog
from modules.training.lora.trainer import TrainingOutcome, encode_latents, seeded_batch
from modules.training.sampling import model_scale, render_samples

if TYPE_CHECKING:
    from modules.jobs.progress import JobControl
    from modules.models.types import LoadedModel

#: the class batch's stream: seeded_batch(seed + CLASS_STREAM, step, ...)
CLASS_STREAM = 0x5EED
#: the class images' VAE samples: encode_latents(..., seed + CLASS_LATENTS)
CLASS_LATENTS = 1_000_000


@dataclass(frozen=True)
class StepLoss:
    """One step's loss and its parts (detached floats for the log)."""

    loss: torch.Tensor
    instance: float
    prior: float | None


def check_trainable(model: "LoadedModel") -> None:
    pipe = model.pipeline
    if getattr(pipe, "unet", None) is None or getattr(pipe, "text_encoder", None) is None:
        raise TrainingError(f"DreamBooth needs a UNet model with a CLIP text encoder; {model.family.label} has none")
    if getattr(pipe, "text_encoder_2", None) is not None:
        raise TrainingError("DreamBooth of SDXL is not offered yet: pick an SD 1.x or 2.x checkpoint")


def token_ids(pipe: Any, prompts: list[str]) -> torch.Tensor:
    """Token ids padded to the tokenizer's length, as the pipeline encodes prompts."""
    tokenizer = pipe.tokenizer
    return tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids


def prior_loss(prediction: torch.Tensor, target: torch.Tensor, instances: int, weight: float) -> StepLoss:
    """``mse(instance half) + weight * mse(class half)``; without a class half, the instance loss alone."""
    per_sample = F.mse_loss(prediction.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
    instance = per_sample[:instances].mean()
    if per_sample.shape[0] == instances:
        return StepLoss(instance, float(instance.detach()), None)
    prior = per_sample[instances:].mean()
    return StepLoss(instance + weight * prior, float(instance.detach()), float(prior.detach()))


@dataclass
class Batch:
    """The instance (and class) images of a run, encoded once."""

    latents: torch.Tensor
    ids: torch.Tensor
    class_latents: torch.Tensor | None = None
    class_ids: torch.Tensor | None = None


def encode_batch(model: "LoadedModel", instances: list[TrainingImage], classes: list[TrainingImage],
                 seed: int) -> Batch:
    pipe = model.pipeline
    batch = Batch(encode_latents(model, instances, seed), token_ids(pipe, [i.caption for i in instances]))
    if classes:
        batch.class_latents = encode_latents(model, classes, seed + CLASS_LATENTS)
        batch.class_ids = token_ids(pipe, [c.caption for c in classes])
    return batch


class DreamboothRun:
    """The models, optimizer and EMA of one run, with the step function the loop and the tests call."""

    def __init__(self, req: TrainDreamboothRequest, model: "LoadedModel", batch: Batch, precision: str = "fp32"
                 ) -> None:
        from diffusers import DDPMScheduler

        check_trainable(model)
        self.req, self.model, self.batch, self.precision = req, model, batch, precision
        pipe = model.pipeline
        self.unet, self.text_encoder = pipe.unet, pipe.text_encoder
        self.device = pipe.device
        pipe.vae.requires_grad_(False)
        _fp32(self.unet)  # trainable weights in fp32 (autocast lowers the compute only)
        groups = [{"params": list(self.unet.parameters()), "lr": req.learning_rate, "name": "unet"}]
        if req.train_text_encoder != "off":
            _fp32(self.text_encoder)
            groups.append({"params": list(self.text_encoder.parameters()),
                           "lr": req.text_encoder_lr or req.learning_rate, "name": "text_encoder"})
        if req.gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()
            if req.train_text_encoder != "off":
                enable = getattr(self.text_encoder, "activation_checkpointing_enable", None)
                (enable or self.text_encoder.gradient_checkpointing_enable)()
        self.optimizer = make_optimizer(groups, eight_bit=req.use_8bit_adam, device=self.device.type)
        self.noise_scheduler = DDPMScheduler.from_config(dict(model.scheduler_config),
                                                         prediction_type=model.prediction_type)
        self.ema = None
        if req.ema_decay is not None:
            from diffusers.training_utils import EMAModel

            self.ema = EMAModel(self.unet.parameters(), decay=req.ema_decay, foreach=True)

    # -- one step ---------------------------------------------------------------------------------
    def loss(self, step: int, prior_loss_weight: float | None = None) -> StepLoss:
        """Step ``step``'s loss (gradients flow into what trains at that step)."""
        req, batch = self.req, self.batch
        weight = req.prior_loss_weight if prior_loss_weight is None else prior_loss_weight
        unet_trains, te_trains = req.unet_trains(step), req.text_encoder_trains(step)
        self.unet.requires_grad_(unet_trains)
        self.text_encoder.requires_grad_(te_trains)
        self.unet.train(unet_trains)
        self.text_encoder.train(te_trains)
        args = (self.noise_scheduler, self.model.prediction_type, self.device)
        index, noisy, timesteps, target = seeded_batch(req.seed, step, batch.latents, req.batch_size, *args)
        ids = batch.ids[index]
        if batch.class_latents is not None and batch.class_ids is not None:
            c_index, c_noisy, c_timesteps, c_target = seeded_batch(req.seed + CLASS_STREAM, step, batch.class_latents,
                                                                   req.batch_size, *args)
            noisy, timesteps = torch.cat([noisy, c_noisy]), torch.cat([timesteps, c_timesteps])
            target, ids = torch.cat([target, c_target]), torch.cat([ids, batch.class_ids[c_index]])
        with autocast(self.precision, self.device.type):
            with torch.set_grad_enabled(te_trains):
                embeds = self.text_encoder(ids.to(self.device))[0]
            prediction = self.unet(noisy.float(), timesteps, encoder_hidden_states=embeds.float()).sample
        return prior_loss(prediction, target, req.batch_size, weight)

    def step(self, step: int) -> StepLoss:
        """Step ``step`` (0-based): loss, backward, clip, optimizer and EMA updates."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.req.seed * 1_000_003 + step + 17)
            result = self.loss(step)
            result.loss.backward()
        params = [p for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None and self.req.unet_trains(step):
            self.ema.step(self.unet.parameters())
        return result

    # -- the session's state ----------------------------------------------------------------------
    def state(self, step: int) -> dict[str, Any]:
        state: dict[str, Any] = {"unet": _cpu(self.unet.state_dict()), "optimizer": self.optimizer.state_dict(),
                                 "step": step}
        if self.req.train_text_encoder != "off":
            state["text_encoder"] = _cpu(self.text_encoder.state_dict())
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        return state

    def restore(self, state: dict[str, Any]) -> int:
        self.unet.load_state_dict(state["unet"])
        if "text_encoder" in state:
            self.text_encoder.load_state_dict(state["text_encoder"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.ema is not None and "ema" in state:
            self.ema.load_state_dict(state["ema"])
        return int(state["step"])

    def finish(self) -> None:
        """Eval mode, and the EMA weights in the UNet when there is an EMA (what gets exported)."""
        self.unet.eval()
        self.text_encoder.eval()
        self.unet.requires_grad_(False)
        self.text_encoder.requires_grad_(False)
        if self.ema is not None:
            self.ema.copy_to(self.unet.parameters())


def _sampling_precision(pipe: Any) -> Any:
    """The trained UNet is fp32 while a GPU pipeline's VAE and frozen text encoder may be fp16: autocast there."""
    import contextlib

    if pipe.device.type == "cuda" and pipe.vae.dtype != torch.float32:
        return torch.autocast("cuda", dtype=pipe.vae.dtype)
    return contextlib.nullcontext()


def _fp32(module: torch.nn.Module) -> None:
    if any(p.dtype != torch.float32 for p in module.parameters()):
        module.to(torch.float32)


def _cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def train(req: TrainDreamboothRequest, model: "LoadedModel", instances: list[TrainingImage],
          classes: list[TrainingImage], session: Session, control: "JobControl", *, precision: str = "fp32",
          on_log: Callable[[int, float], None] | None = None) -> TrainingOutcome:
    """Train (or resume) the session up to ``req.steps``; the pipeline holds the trained weights afterwards
    (the EMA's, with ``ema_decay``)."""
    started = time.perf_counter()
    if req.prior_preservation and not classes:
        raise TrainingError("prior preservation needs class images, and there are none")
    check_trainable(model)
    pipe = model.pipeline
    run = DreamboothRun(req, model, encode_batch(model, instances, classes, req.seed), precision)
    start = 0
    state = session.load_state()
    session.start(req)  # the latest request (steps may have changed): what Resume submits again
    if state is not None:
        start = run.restore(state)
        session.truncate_log(start)
    control.begin(1, req.steps, text=f"DreamBooth {req.name}")
    control.step(start)
    outcome = TrainingOutcome(steps_done=0, last_step=start, stopped=False)
    size = int(run.batch.latents.shape[-1]) * model_scale(pipe)
    board = TensorBoardLog(session.folder / "tensorboard", start)
    try:
        for step in range(start, req.steps):
            control.pause_point()
            if control.should_stop:
                outcome.stopped = True
                break
            result = run.step(step)
            value = float(result.loss.detach())
            outcome.losses.append(value)
            outcome.steps_done += 1
            outcome.last_step = step + 1
            stage = "UNet" if req.unet_trains(step) else "text encoder"
            lr = run.optimizer.param_groups[0 if stage == "UNet" else -1]["lr"]
            parts = {"instance": result.instance, **({"prior": result.prior} if result.prior is not None else {})}
            session.log({"step": step + 1, "loss": value, **parts, "lr": lr, "stage": stage, "time": time.time()})
            board.scalars(step + 1, loss=value, lr=lr, **parts)
            control.progress.text = f"DreamBooth {req.name} ({stage}) · loss {value:.4f}"
            control.step(step + 1)
            if on_log is not None:
                on_log(step + 1, value)
            if (step + 1) % req.checkpoint_every == 0:
                session.save_state(run.state(step + 1))
            if req.sample_every and (step + 1) % req.sample_every == 0:
                control.progress.text = f"DreamBooth {req.name} · sample images at step {step + 1}"
                with _sampling_precision(pipe):
                    written = render_samples(pipe, req.samples(), seed=req.seed, size=size, steps=req.sample_steps,
                                             folder=session.samples_dir, step=step + 1)
                board.images(step + 1, written)
    finally:
        board.close()
    session.save_state(run.state(outcome.last_step))
    run.finish()
    outcome.seconds = time.perf_counter() - started
    return outcome
