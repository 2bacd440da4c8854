"""What conditions the UNet during LoRA training: the captions' embeddings and, for SDXL, the pooled
embedding and the time ids.

SD 1.x/2.x: the text encoder's last hidden state (diffusers' training recipe). SDXL: both encoders'
penultimate hidden states side by side, the second encoder's pooled (projected) embedding, and the
micro-conditioning time ids ``original size + crop top-left + target size`` of each image. Captions are
tokenised once (:class:`Captions`); their embeddings are computed once when the text encoders are frozen, or
at every step through the adapters when they are trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import torch

if TYPE_CHECKING:
    from modules.training.lora.dataset import TrainingImage


def is_sdxl(pipe: Any) -> bool:
    """Two text encoders and the ``text_time`` add-embedding: an SDXL base UNet."""
    unet = getattr(pipe, "unet", None)
    return (getattr(pipe, "text_encoder_2", None) is not None and unet is not None
            and getattr(unet.config, "addition_embed_type", None) == "text_time")


def text_encoders(pipe: Any) -> list[tuple[str, Any, Any]]:
    """(component attribute, tokenizer, encoder) of each text encoder the captions go through."""
    pairs = [("text_encoder", pipe.tokenizer, pipe.text_encoder)]
    if is_sdxl(pipe):
        pairs.append(("text_encoder_2", pipe.tokenizer_2, pipe.text_encoder_2))
    return pairs


@dataclass(frozen=True)
class Captions:
    """Every image's caption as token ids, one tensor (images, tokens) per text encoder."""

    ids: tuple[torch.Tensor, ...]

    @classmethod
    def of(cls, pipe: Any, captions: Sequence[str]) -> "Captions":
        out = []
        for _, tokenizer, _ in text_encoders(pipe):
            out.append(tokenizer(list(captions), padding="max_length", max_length=tokenizer.model_max_length,
                                 truncation=True, return_tensors="pt").input_ids)
        return cls(tuple(out))


@dataclass(frozen=True)
class Conditioning:
    """The UNet's conditioning of a batch: hidden states and, for SDXL, ``added_cond_kwargs``."""

    embeds: torch.Tensor
    pooled: torch.Tensor | None = None
    time_ids: torch.Tensor | None = None

    def unet_kwargs(self, index: torch.Tensor | None = None) -> dict[str, Any]:
        """Keyword arguments of the UNet call, for the rows ``index`` (all when None)."""
        pick = (lambda t: t) if index is None else (lambda t: t[index])
        kwargs: dict[str, Any] = {"encoder_hidden_states": pick(self.embeds)}
        if self.pooled is not None and self.time_ids is not None:
            kwargs["added_cond_kwargs"] = {"text_embeds": pick(self.pooled), "time_ids": pick(self.time_ids)}
        return kwargs


def encode(pipe: Any, captions: Captions, index: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(hidden states, pooled or None) of the captions ``index`` (all when None), with the encoders as they are
    (gradients flow when their adapters are trained)."""
    device = pipe.device
    if not is_sdxl(pipe):
        ids = captions.ids[0] if index is None else captions.ids[0][index]
        return pipe.text_encoder(ids.to(device))[0], None
    hidden, pooled = [], None
    for (_, _, encoder), all_ids in zip(text_encoders(pipe), captions.ids):
        ids = all_ids if index is None else all_ids[index]
        output = encoder(ids.to(device), output_hidden_states=True)
        if output[0].ndim == 2:  # the projected, pooled embedding of the second encoder
            pooled = output[0]
        hidden.append(output.hidden_states[-2])
    return torch.cat(hidden, dim=-1), pooled


def time_ids(pipe: Any, images: Sequence["TrainingImage"], size: int) -> torch.Tensor | None:
    """SDXL's ``original_size + crop_top_left + target_size`` per image (None for other models)."""
    if not is_sdxl(pipe):
        return None
    rows = []
    for image in images:
        original = image.original_size if image.original_size != (0, 0) else (size, size)
        rows.append([*original, *image.crop_top_left, size, size])
    ids = torch.tensor(rows, dtype=torch.float32)
    expected = pipe.unet.add_embedding.linear_1.in_features - pipe.text_encoder_2.config.projection_dim
    if ids.shape[1] * pipe.unet.config.addition_time_embed_dim != expected:
        from modules.training.lora.errors import TrainingError

        raise TrainingError("this SDXL UNet expects other micro-conditioning than (original size, crop, target "
                            "size): a refiner-style model cannot be trained here")
    return ids.to(pipe.device, pipe.unet.dtype)


def frozen(pipe: Any, captions: Captions, images: Sequence["TrainingImage"], size: int) -> Conditioning:
    """Every image's conditioning, computed once with frozen text encoders."""
    with torch.no_grad():
        embeds, pooled = encode(pipe, captions)
    dtype = pipe.unet.dtype
    return Conditioning(embeds.to(dtype), pooled.to(dtype) if pooled is not None else None, time_ids(pipe, images, size))
