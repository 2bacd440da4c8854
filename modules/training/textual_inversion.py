"""Textual inversion: a new word for the text encoder, whose vectors alone are trained.

The word's placeholder tokens are added to a copy of the tokenizer; the text encoder's input-embedding
table is swapped, for the training only, for :class:`TrainableRows`: the frozen original table with
the new rows put in from one parameter, so the gradient reaches those rows and nothing else (the UNet,
the VAE and the text encoder's own weights are frozen). Each step draws its batch, noise and timesteps
from a generator seeded by (seed, step) like the LoRA trainer, and the session keeps the vectors,
the optimizer and the step, so a stopped run resumes exactly. The result is exported as an A1111
embedding (``emb_params`` in a ``.safetensors``), which prompts load by file name
(:mod:`modules.generation.addons.embeddings`).
"""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from modules.training.embedding_request import TrainEmbeddingRequest
from modules.training.lora.dataset import TrainingImage
from modules.training.lora.session import Session
from modules.training.lora.trainer import TrainingError, TrainingOutcome, encode_latents, seeded_batch

if TYPE_CHECKING:
    from modules.jobs.progress import JobControl
    from modules.models.types import LoadedModel


class TrainableRows(nn.Module):
    """An input-embedding table: ``base`` (frozen) with the rows ``ids`` taken from ``vectors`` (trained)."""

    def __init__(self, base: torch.Tensor, ids: Sequence[int], vectors: nn.Parameter) -> None:
        super().__init__()
        self.register_buffer("base", base.detach(), persistent=False)
        self.register_buffer("ids", torch.tensor(list(ids), dtype=torch.long, device=base.device), persistent=False)
        self.vectors = vectors
        self.num_embeddings = max(int(base.shape[0]), max(ids) + 1)
        self.embedding_dim = int(base.shape[1])

    @property
    def weight(self) -> torch.Tensor:
        base = self.base
        if self.num_embeddings > base.shape[0]:
            pad = base.new_zeros(self.num_embeddings - base.shape[0], base.shape[1])
            base = torch.cat([base, pad])
        return base.index_put((self.ids,), self.vectors.to(base.dtype))

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(input_ids, self.weight)


def check_model(model: "LoadedModel") -> None:
    pipe = model.pipeline
    if getattr(pipe, "unet", None) is None or getattr(pipe, "text_encoder", None) is None \
            or getattr(pipe, "tokenizer", None) is None:
        raise TrainingError(f"textual inversion needs a UNet model with a CLIP text encoder; {model.family.label} "
                            "has none")
    if getattr(pipe, "text_encoder_2", None) is not None:
        raise TrainingError("textual inversion of SDXL is not offered yet: pick an SD 1.x or 2.x checkpoint")


def placeholder_tokens(count: int) -> list[str]:
    return ["<atelier-ti>"] + [f"<atelier-ti>_{i}" for i in range(1, count)]


def init_vectors(model: "LoadedModel", init_text: str, count: int) -> torch.Tensor:
    """``count`` vectors from the init text's token vectors (cycled; zeros for an empty text)."""
    pipe = model.pipeline
    table = pipe.text_encoder.get_input_embeddings().weight.detach().to("cpu", torch.float32)
    ids = pipe.tokenizer(init_text or "", add_special_tokens=False).input_ids if (init_text or "").strip() else []
    if not ids:
        return torch.zeros(count, table.shape[1])
    rows = table[torch.tensor(ids)]
    return torch.stack([rows[i % len(rows)] for i in range(count)]).clone()


def fill_caption(template: str, tokens_text: str, filewords: str) -> str:
    text = template.replace("{token}", tokens_text).replace("{filewords}", filewords.strip())
    return " ".join(text.replace(" ,", ",").split()).strip(" ,")


def train_embedding(req: TrainEmbeddingRequest, model: "LoadedModel", images: list[TrainingImage], session: Session,
                    control: "JobControl", initial: torch.Tensor, *,
                    on_log: Callable[[int, float], None] | None = None) -> tuple[TrainingOutcome, torch.Tensor]:
    """Train (or resume) the session's vectors up to ``req.steps``; returns (outcome, vectors on the CPU)."""
    from diffusers import DDPMScheduler

    check_model(model)
    started = time.perf_counter()
    pipe = model.pipeline
    unet, encoder, device = pipe.unet, pipe.text_encoder, pipe.device
    unet.requires_grad_(False)
    encoder.requires_grad_(False)
    latents = encode_latents(model, images, req.seed)
    noise_scheduler = DDPMScheduler.from_config(dict(model.scheduler_config), prediction_type=model.prediction_type)
    tokens = placeholder_tokens(int(initial.shape[0]))
    tokenizer = copy.deepcopy(pipe.tokenizer)
    tokenizer.add_tokens(tokens)
    ids = tokenizer.convert_tokens_to_ids(tokens)
    captions = [fill_caption(req.caption_template, " ".join(tokens), image.caption) for image in images]
    input_ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                          return_tensors="pt").input_ids
    vectors = nn.Parameter(initial.detach().clone().to(device, torch.float32))
    optimizer = torch.optim.AdamW([vectors], lr=req.learning_rate, weight_decay=0.0)
    state = session.load_state()
    session.start(req)
    start = 0
    if state is not None:
        with torch.no_grad():
            vectors.copy_(state["vectors"].to(device, torch.float32))
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["step"])
        session.truncate_log(start)

    def save(step: int) -> None:
        session.save_state({"vectors": vectors.detach().to("cpu").clone(), "optimizer": optimizer.state_dict(),
                            "step": step})

    from modules.training.lora.tensorboard import TensorBoardLog

    original = encoder.get_input_embeddings()
    encoder.set_input_embeddings(TrainableRows(original.weight, ids, vectors))
    control.begin(1, req.steps, text=f"training embedding {req.name}")
    control.step(start)
    outcome = TrainingOutcome(steps_done=0, last_step=start, stopped=False)
    board = TensorBoardLog(session.folder / "tensorboard", start)  # loss and lr, beside the loss log
    try:
        for step in range(start, req.steps):
            control.pause_point()
            if control.should_stop:
                outcome.stopped = True
                break
            index, noisy, timesteps, target = seeded_batch(req.seed, step, latents, req.batch_size, noise_scheduler,
                                                           model.prediction_type, device)
            embeds = encoder(input_ids[index].to(device))[0].to(unet.dtype)
            prediction = unet(noisy, timesteps, encoder_hidden_states=embeds).sample
            loss = F.mse_loss(prediction.float(), target.float())
            loss.backward()
            if req.max_grad_norm:
                torch.nn.utils.clip_grad_norm_([vectors], req.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            value = float(loss.detach())
            outcome.losses.append(value)
            outcome.steps_done += 1
            outcome.last_step = step + 1
            session.log({"step": step + 1, "loss": value, "lr": req.learning_rate, "time": time.time()})
            board.scalars(step + 1, loss=value, lr=req.learning_rate)
            control.progress.text = f"training embedding {req.name} · loss {value:.4f}"
            control.step(step + 1)
            if on_log is not None:
                on_log(step + 1, value)
            if (step + 1) % req.checkpoint_every == 0:
                save(step + 1)
    finally:
        board.close()
        encoder.set_input_embeddings(original)
    save(outcome.last_step)
    outcome.seconds = time.perf_counter() - started
    return outcome, vectors.detach().to("cpu", torch.float32).clone()


def write_embedding(path: Path, vectors: torch.Tensor, metadata: Mapping[str, Any]) -> Path:
    """The A1111 embedding file (``emb_params``: (count, width) float32), written atomically."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    save_file({"emb_params": vectors.detach().to("cpu", torch.float32).contiguous()}, str(partial), metadata=meta)
    os.replace(partial, path)
    return path
