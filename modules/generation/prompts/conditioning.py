"""A1111-style prompt encoding for the CLIP text encoders of SD 1.x / 2.x / SDXL diffusers pipelines.

Reproduces A1111's ``FrozenCLIPEmbedderWithCustomWords`` (``sd_hijack_clip.py``) with the default
"Original" emphasis: the prompt is split into weighted segments (:func:`parse_prompt_attention`), each
segment is tokenised without BOS/EOS, tokens are packed into 75-token chunks (``BREAK`` starts a new chunk; a
chunk that fills up moves the words after a comma less than 20 tokens back into the next chunk), each chunk
becomes ``BOS + 75 + EOS`` and is encoded on its own; the outputs are multiplied by the token weights and
rescaled to the original mean, then the chunks are concatenated to ``(B, 77*k, dim)``.

Layers, as A1111 picks them:

* SD 1.x (CLIP-L): last layer; "Clip skip" N > 1 takes hidden state ``-N`` and the final layer norm.
* SD 2.x (OpenCLIP-H, padded with ``!``): the converted encoder's last layer; A1111 ignores clip skip here.
* SDXL: both encoders' penultimate hidden states (no final norm), concatenated on the feature dim; the pooled
  embedding is ``text_encoder_2``'s projection of the first chunk. Clip skip is ignored as in A1111 (unless
  ``sdxl_clip_l_skip``, A1111's option of that name, which then picks CLIP-L hidden state ``-N``). An
  all-empty negative prompt gives zero embeddings when the pipeline's ``force_zeros_for_empty_prompt`` is set.

Positive and negative conditionings are padded to the same number of chunks with the encoded empty prompt
(A1111's "Pad prompt/negative prompt"). The emphasis mean is taken over one prompt's encoding group (a prompt
with its prompt-editing variants), as A1111 batches them. Textual-inversion embeddings are not handled here.

Runner usage::

    kwargs = encode_prompt_batch(pipe, family.id, prompts, negative_prompts, clip_skip=req.clip_skip)
    pipe(**kwargs, ...)                      # instead of prompt=/negative_prompt=/clip_skip=

    sched = ScheduledConditioning.build(pipe, family.id, prompts, negatives, steps=req.steps,
                                        clip_skip=req.clip_skip)
    def on_step_end(pipeline, step, timestep, kw):
        kw = sched.callback(pipeline, step, timestep, kw)   # swaps embeddings for prompt editing
        ...                                                  # progress / interrupt
        return kw
    pipe(**sched.initial_kwargs(), callback_on_step_end=on_step_end,
         callback_on_step_end_tensor_inputs=sched.tensor_inputs, ...)

FLUX uses T5 without token weights: pass ``prompt_parser.strip_attention(text)`` as its plain prompt.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal, Sequence

import torch

from modules.generation.prompts.parser import (
    get_learned_conditioning_prompt_schedules,
    is_break,
    parse_prompt_attention,
    schedule_index_at,
)

CHUNK_LENGTH = 75
#: tokens per encoded chunk: BOS + 75 + EOS
CHUNK_TOKENS = CHUNK_LENGTH + 2
#: A1111 ``comma_padding_backtrack`` default
COMMA_PADDING_BACKTRACK = 20

Layer = Literal["last", "penultimate"]


class ConditioningError(ValueError):
    """A prompt that cannot be encoded for this pipeline (the message is shown to the user)."""


# --------------------------------------------------------------------------- chunking (tokenizer only)


@dataclass
class PromptChunk:
    """77 token ids (BOS, 75 prompt/filler tokens, EOS) and one weight per token."""

    tokens: list[int] = field(default_factory=list)
    multipliers: list[float] = field(default_factory=list)


class ChunkTokenizer:
    """Turns prompt text into A1111 prompt chunks with one CLIP tokenizer."""

    def __init__(self, tokenizer: Any, comma_padding_backtrack: int = COMMA_PADDING_BACKTRACK) -> None:
        self.tokenizer = tokenizer
        self.comma_padding_backtrack = comma_padding_backtrack
        self.id_start: int = tokenizer.bos_token_id
        self.id_end: int = tokenizer.eos_token_id
        pad = tokenizer.pad_token_id
        self.id_pad: int = self.id_end if pad is None else pad
        comma = tokenizer.convert_tokens_to_ids(",</w>")  # a lookup, not a 49k-entry vocab copy
        self.comma_token: int | None = None if comma == tokenizer.unk_token_id else comma

    def empty_chunk(self) -> PromptChunk:
        """BOS followed by EOS filler: the chunk an empty prompt encodes to."""
        return PromptChunk([self.id_start] + [self.id_end] * (CHUNK_LENGTH + 1), [1.0] * CHUNK_TOKENS)

    def tokenize_line(self, line: str) -> tuple[list[PromptChunk], int]:
        """The chunks of one prompt and its token count (what A1111 shows as ``N/75``)."""
        parsed = parse_prompt_attention(line)
        tokenized = self.tokenizer([text for text, _ in parsed], truncation=False,
                                   add_special_tokens=False)["input_ids"]
        chunks: list[PromptChunk] = []
        chunk = PromptChunk()
        token_count = 0
        last_comma = -1

        def next_chunk(is_last: bool = False) -> None:
            nonlocal token_count, last_comma, chunk
            token_count += len(chunk.tokens) if is_last else CHUNK_LENGTH
            to_add = CHUNK_LENGTH - len(chunk.tokens)
            if to_add > 0:
                chunk.tokens += [self.id_end] * to_add
                chunk.multipliers += [1.0] * to_add
            chunk.tokens = [self.id_start] + chunk.tokens + [self.id_end]
            chunk.multipliers = [1.0] + chunk.multipliers + [1.0]
            last_comma = -1
            chunks.append(chunk)
            chunk = PromptChunk()

        for tokens, segment in zip(tokenized, parsed):
            if is_break(segment):
                next_chunk()
                continue
            weight = segment[1]
            for token in tokens:
                if token == self.comma_token:
                    last_comma = len(chunk.tokens)
                elif (self.comma_padding_backtrack != 0 and len(chunk.tokens) == CHUNK_LENGTH
                      and last_comma != -1 and len(chunk.tokens) - last_comma <= self.comma_padding_backtrack):
                    cut = last_comma + 1
                    moved_tokens, moved_mults = chunk.tokens[cut:], chunk.multipliers[cut:]
                    chunk.tokens, chunk.multipliers = chunk.tokens[:cut], chunk.multipliers[:cut]
                    next_chunk()
                    chunk.tokens, chunk.multipliers = moved_tokens, moved_mults
                if len(chunk.tokens) == CHUNK_LENGTH:
                    next_chunk()
                chunk.tokens.append(token)
                chunk.multipliers.append(weight)

        if chunk.tokens or not chunks:
            next_chunk(is_last=True)
        return chunks, token_count

    def model_input(self, chunk: PromptChunk) -> list[int]:
        """Chunk tokens as fed to the encoder: after the first EOS, OpenCLIP tokenizers pad with their pad id."""
        tokens = list(chunk.tokens)
        if self.id_pad != self.id_end:
            first_end = tokens.index(self.id_end)
            tokens[first_end + 1:] = [self.id_pad] * (len(tokens) - first_end - 1)
        return tokens


# --------------------------------------------------------------------------- encoding


@dataclass(frozen=True)
class Conditioning:
    """Encoded prompts: ``embeds`` (B, 77*k, dim) and, for SDXL, ``pooled`` (B, proj_dim)."""

    embeds: torch.Tensor
    pooled: torch.Tensor | None = None

    @property
    def chunks(self) -> int:
        return self.embeds.shape[1] // CHUNK_TOKENS

    def row(self, index: int) -> "Conditioning":
        """One batch item, keeping the batch dim."""
        pooled = None if self.pooled is None else self.pooled[index:index + 1]
        return Conditioning(self.embeds[index:index + 1], pooled)


def _execution_device(module: torch.nn.Module) -> torch.device:
    try:
        from diffusers.utils.torch_utils import get_module_execution_device
    except ImportError:  # older diffusers
        return next(module.parameters()).device
    return get_module_execution_device(module)


def _final_layer_norm(model: torch.nn.Module) -> torch.nn.Module:
    """The encoder's final LayerNorm (transformers 5 keeps it on CLIPTextModel, 4.x under ``text_model``)."""
    norm = getattr(model, "final_layer_norm", None)
    if norm is None:
        norm = model.text_model.final_layer_norm
    return norm


@dataclass(frozen=True)
class ClipEncoder:
    """One CLIP text encoder driven as A1111 drives it (see the module docstring for ``layer``)."""

    chunker: ChunkTokenizer
    model: torch.nn.Module
    layer: Layer
    honours_clip_skip: bool
    pooled: bool = False

    def _select(self, out: Any, clip_skip: int) -> torch.Tensor:
        if self.layer == "penultimate":
            if self.honours_clip_skip:
                return out.hidden_states[-max(clip_skip, 1)]
            return out.hidden_states[-2]
        if self.honours_clip_skip and clip_skip > 1:
            return _final_layer_norm(self.model)(out.hidden_states[-clip_skip])
        return out.last_hidden_state

    def encode_chunks(self, batch: Sequence[PromptChunk], clip_skip: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Encode one chunk per batch item; apply the weights with A1111 "Original" emphasis."""
        device = _execution_device(self.model)
        tokens = torch.tensor([self.chunker.model_input(c) for c in batch], dtype=torch.long, device=device)
        out = self.model(input_ids=tokens, output_hidden_states=True)
        z = self._select(out, clip_skip)
        pooled = out.text_embeds if self.pooled else None
        multipliers = torch.tensor([c.multipliers for c in batch], dtype=torch.float32, device=z.device)
        if bool((multipliers == 1.0).all()):
            return z, pooled  # A1111's rescale is the identity here; skipping it avoids 0/0
        weighted = z.float()
        original_mean = weighted.mean()
        weighted = weighted * multipliers.unsqueeze(-1)
        new_mean = weighted.mean()
        if new_mean != 0:
            weighted = weighted * (original_mean / new_mean)
        return weighted.to(z.dtype), pooled

    def encode_texts(self, texts: Sequence[str], clip_skip: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A1111's ``forward``: one encoding group, chunk count = the longest text's, pooled from chunk 0."""
        cache: dict[str, list[PromptChunk]] = {}
        for text in texts:
            if text not in cache:
                cache[text] = self.chunker.tokenize_line(text)[0]
        batch_chunks = [cache[text] for text in texts]
        count = max(len(chunks) for chunks in batch_chunks)
        zs: list[torch.Tensor] = []
        pooled: torch.Tensor | None = None
        for i in range(count):
            batch = [chunks[i] if i < len(chunks) else self.chunker.empty_chunk() for chunks in batch_chunks]
            z, p = self.encode_chunks(batch, clip_skip)
            if i == 0:
                pooled = p
            zs.append(z)
        return torch.cat(zs, dim=1), pooled


def pad_chunks(cond: Conditioning, chunks: int, empty: Conditioning) -> Conditioning:
    """Append encoded empty-prompt chunks until ``cond`` has ``chunks`` chunks (A1111's ``pad_cond``)."""
    missing = chunks - cond.chunks
    if missing <= 0:
        return cond
    filler = empty.embeds.to(cond.embeds.dtype).repeat(cond.embeds.shape[0], missing, 1)
    return replace(cond, embeds=torch.cat([cond.embeds, filler], dim=1))


def _stack(conds: Sequence[Conditioning]) -> Conditioning:
    pooled = None if conds[0].pooled is None else torch.cat([c.pooled for c in conds])  # type: ignore[misc]
    return Conditioning(torch.cat([c.embeds for c in conds]), pooled)


def _layer_count(model: Any) -> int | None:
    layers = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    return int(layers) if layers else None


def clip_skip_depth(pipe: Any, family_arch: str, *, sdxl_clip_l_skip: bool = False) -> int | None:
    """The deepest clip skip :class:`PromptEncoder` can honour on ``pipe`` (the layer count of the CLIP text
    encoder that honours it: 12 for SD 1.x, whatever a small model has), or None where clip skip is not used
    (FLUX, SD 2.x's OpenCLIP, SDXL unless ``sdxl_clip_l_skip``). Deeper values would index past the encoder's
    hidden states, so callers clamp or refuse them before encoding (:mod:`modules.generation.fitting`)."""
    if family_arch.startswith("flux"):
        return None
    te1, te2, tok1 = (getattr(pipe, name, None) for name in ("text_encoder", "text_encoder_2", "tokenizer"))
    if te2 is not None:  # SDXL: only CLIP-L can honour clip skip, and only when asked to
        return _layer_count(te1) if sdxl_clip_l_skip and te1 is not None else None
    if te1 is None or tok1 is None:
        return None
    pad = tok1.pad_token_id
    if pad is not None and pad != tok1.eos_token_id:  # OpenCLIP (SD 2.x) ignores clip skip, as in PromptEncoder
        return None
    return _layer_count(te1)


class PromptEncoder:
    """A1111 conditioning for one pipeline: knows its encoders, clip skip and empty-prompt encoding."""

    def __init__(self, pipe: Any, family_arch: str, clip_skip: int = 1, *, sdxl_clip_l_skip: bool = False,
                 comma_padding_backtrack: int = COMMA_PADDING_BACKTRACK) -> None:
        if family_arch.startswith("flux"):
            raise ConditioningError("FLUX prompts are not CLIP-weighted; pass strip_attention(prompt) as its prompt")
        self.pipe = pipe
        self.clip_skip = max(int(clip_skip), 1)
        te1, te2 = getattr(pipe, "text_encoder", None), getattr(pipe, "text_encoder_2", None)
        tok1, tok2 = getattr(pipe, "tokenizer", None), getattr(pipe, "tokenizer_2", None)
        self.is_sdxl = te2 is not None
        encoders: list[ClipEncoder] = []
        if self.is_sdxl:
            if te1 is not None:
                encoders.append(ClipEncoder(ChunkTokenizer(tok1, comma_padding_backtrack), te1, "penultimate",
                                            honours_clip_skip=sdxl_clip_l_skip))
            encoders.append(ClipEncoder(ChunkTokenizer(tok2, comma_padding_backtrack), te2, "penultimate",
                                        honours_clip_skip=False, pooled=True))
        elif te1 is not None and tok1 is not None:
            chunker = ChunkTokenizer(tok1, comma_padding_backtrack)
            # A1111's OpenCLIP (SD 2.x) embedder, recognisable by its distinct pad token, ignores clip skip.
            encoders.append(ClipEncoder(chunker, te1, "last", honours_clip_skip=chunker.id_pad == chunker.id_end))
        else:
            raise ConditioningError(f"the '{family_arch}' pipeline has no CLIP text encoder to encode prompts with")
        self.encoders = tuple(encoders)
        self._empty: Conditioning | None = None

    @property
    def zeros_for_empty_negative(self) -> bool:
        """SDXL base: an all-empty negative prompt is encoded as zeros (diffusers/A1111 behaviour)."""
        config = getattr(self.pipe, "config", {})
        return self.is_sdxl and bool(config.get("force_zeros_for_empty_prompt", False))

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> Conditioning:
        """Encode ``texts`` as one A1111 group (the emphasis mean and chunk count are shared)."""
        parts = [enc.encode_texts(texts, self.clip_skip) for enc in self.encoders]
        count = max(z.shape[1] for z, _ in parts) // CHUNK_TOKENS
        embeds = []
        for enc, (z, _) in zip(self.encoders, parts):
            if z.shape[1] < count * CHUNK_TOKENS:
                empty, _ = enc.encode_texts([""], self.clip_skip)
                z = pad_chunks(Conditioning(z), count, Conditioning(empty)).embeds
            embeds.append(z)
        pooled = next((p for _, p in parts if p is not None), None)
        return Conditioning(torch.cat(embeds, dim=-1), pooled)

    def empty(self) -> Conditioning:
        """The empty prompt's encoding (A1111's ``cond_stage_model_empty_prompt``), computed once."""
        if self._empty is None:
            self._empty = self.encode([""])
        return self._empty

    def encode_each(self, prompts: Sequence[str]) -> list[Conditioning]:
        """One conditioning per prompt (each its own group, as A1111 encodes a batch); repeats are reused."""
        cache: dict[str, Conditioning] = {}
        for prompt in prompts:
            if prompt not in cache:
                cache[prompt] = self.encode([prompt])
        return [cache[p] for p in prompts]

    def equalize(self, conds: Sequence[Conditioning], chunks: int | None = None) -> list[Conditioning]:
        """Pad every conditioning to the same (or the given) chunk count with empty-prompt chunks."""
        target = max([c.chunks for c in conds] + [chunks or 0])
        if all(c.chunks == target for c in conds):
            return list(conds)
        empty = self.empty()
        return [pad_chunks(c, target, empty) for c in conds]


def _zeros_like(cond: Conditioning) -> Conditioning:
    pooled = None if cond.pooled is None else torch.zeros_like(cond.pooled)
    return Conditioning(torch.zeros_like(cond.embeds), pooled)


def _call_kwargs(positive: Conditioning, negative: Conditioning) -> dict[str, torch.Tensor]:
    kwargs = {"prompt_embeds": positive.embeds, "negative_prompt_embeds": negative.embeds}
    if positive.pooled is not None and negative.pooled is not None:
        kwargs["pooled_prompt_embeds"] = positive.pooled
        kwargs["negative_pooled_prompt_embeds"] = negative.pooled
    return kwargs


def _check_batch(prompts: Sequence[str], negative_prompts: Sequence[str]) -> None:
    if not prompts:
        raise ConditioningError("no prompts to encode")
    if len(prompts) != len(negative_prompts):
        raise ConditioningError(f"got {len(prompts)} prompts but {len(negative_prompts)} negative prompts")


def encode_prompt_batch(pipe: Any, family_arch: str, prompts: Sequence[str], negative_prompts: Sequence[str],
                        clip_skip: int = 1, *, sdxl_clip_l_skip: bool = False) -> dict[str, torch.Tensor]:
    """Pipeline-call kwargs for a batch of (already schedule-resolved) prompts.

    Returns ``prompt_embeds`` / ``negative_prompt_embeds`` (and for SDXL ``pooled_prompt_embeds`` /
    ``negative_pooled_prompt_embeds``), all with the same number of 77-token chunks. ``family_arch`` is the
    family id or architecture (``"sd1"``, ``"sdxl"``, ``"ldm-unet"``...); SD vs SDXL is read from the pipeline.
    Pass them instead of ``prompt``/``negative_prompt``/``clip_skip``. Prompt editing syntax is not resolved
    here: use :class:`ScheduledConditioning` for that.
    """
    _check_batch(prompts, negative_prompts)
    encoder = PromptEncoder(pipe, family_arch, clip_skip, sdxl_clip_l_skip=sdxl_clip_l_skip)
    positives = encoder.encode_each(prompts)
    zero_negative = encoder.zeros_for_empty_negative and all(n == "" for n in negative_prompts)
    negatives = [] if zero_negative else encoder.encode_each(negative_prompts)
    conds = encoder.equalize(positives + negatives)
    positive = _stack(conds[:len(prompts)])
    negative = _zeros_like(positive) if zero_negative else _stack(conds[len(prompts):])
    return _call_kwargs(positive, negative)


# --------------------------------------------------------------------------- prompt editing over the steps


Schedule = list[tuple[int, Conditioning]]


def _encode_schedules(encoder: PromptEncoder, prompts: Sequence[str], steps: int, hires_steps: int | None,
                      use_old_scheduling: bool) -> list[Schedule]:
    """Per prompt, ``(end_at_step, conditioning)``; the variants of one prompt are one A1111 group."""
    texts = get_learned_conditioning_prompt_schedules(prompts, steps, hires_steps, use_old_scheduling)
    cache: dict[str, Schedule] = {}
    for prompt, schedule in zip(prompts, texts):
        if prompt not in cache:
            group = encoder.encode([text for _, text in schedule])
            cache[prompt] = [(end, group.row(i)) for i, (end, _) in enumerate(schedule)]
    return [cache[p] for p in prompts]


@dataclass(frozen=True)
class ScheduledConditioning:
    """Precomputed conditionings for prompt editing / alternation, swapped in by a step-end callback.

    Step numbering follows the pipeline's ``callback_on_step_end`` index (one per model evaluation, like
    A1111's denoiser step counter); after step ``i`` the embeddings for step ``i + 1`` are installed. A text is
    used at step ``s`` while ``s <= end_at_step`` (A1111's rule, so ``[a:b:5]`` uses ``a`` for steps 0-5);
    steps past the schedule's end keep the last text.
    """

    positive: list[Schedule]
    negative: list[Schedule] | None  # None: SDXL zero negative
    steps: int

    @classmethod
    def build(cls, pipe: Any, family_arch: str, prompts: Sequence[str], negative_prompts: Sequence[str],
              steps: int, clip_skip: int = 1, *, hires_steps: int | None = None, use_old_scheduling: bool = False,
              sdxl_clip_l_skip: bool = False) -> "ScheduledConditioning":
        """Encode every distinct scheduled text of the batch; all share one chunk count."""
        _check_batch(prompts, negative_prompts)
        encoder = PromptEncoder(pipe, family_arch, clip_skip, sdxl_clip_l_skip=sdxl_clip_l_skip)
        positive = _encode_schedules(encoder, prompts, steps, hires_steps, use_old_scheduling)
        zero_negative = encoder.zeros_for_empty_negative and all(n == "" for n in negative_prompts)
        negative = None if zero_negative else _encode_schedules(encoder, negative_prompts, steps, hires_steps,
                                                                use_old_scheduling)
        all_conds = [c for s in positive + (negative or []) for _, c in s]
        target = max(c.chunks for c in all_conds)
        if any(c.chunks != target for c in all_conds):
            empty = encoder.empty()
            positive = [[(e, pad_chunks(c, target, empty)) for e, c in s] for s in positive]
            if negative is not None:
                negative = [[(e, pad_chunks(c, target, empty)) for e, c in s] for s in negative]
        last_step = hires_steps if hires_steps is not None and not use_old_scheduling else steps
        return cls(positive=positive, negative=negative, steps=last_step)

    @property
    def is_sdxl(self) -> bool:
        return self.positive[0][0][1].pooled is not None

    @property
    def is_static(self) -> bool:
        """True when no prompt changes during sampling (the callback then never swaps anything)."""
        return all(len(s) == 1 for s in self.positive + (self.negative or []))

    @property
    def tensor_inputs(self) -> list[str]:
        """``callback_on_step_end_tensor_inputs`` the callback needs."""
        return ["latents", "prompt_embeds", "add_text_embeds"] if self.is_sdxl else ["latents", "prompt_embeds"]

    def _selection(self, step: int) -> tuple[int, ...]:
        step = min(step, self.steps)
        return tuple(schedule_index_at([(e, "") for e, _ in s], step)
                     for s in self.positive + (self.negative or []))

    def conditionings_at(self, step: int) -> tuple[Conditioning, Conditioning]:
        """Positive and negative batch conditionings in effect at 0-based ``step``."""
        picks = self._selection(step)
        n = len(self.positive)
        positive = _stack([s[i][1] for s, i in zip(self.positive, picks[:n])])
        if self.negative is None:
            return positive, _zeros_like(positive)
        return positive, _stack([s[i][1] for s, i in zip(self.negative, picks[n:])])

    def kwargs_at(self, step: int) -> dict[str, torch.Tensor]:
        """Pipeline-call kwargs (as :func:`encode_prompt_batch`) for ``step``."""
        return _call_kwargs(*self.conditionings_at(step))

    def initial_kwargs(self) -> dict[str, torch.Tensor]:
        """The kwargs to start sampling with (step 0)."""
        return self.kwargs_at(0)

    def callback(self, pipeline: Any, step: int, timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        """``callback_on_step_end`` body: install step ``step + 1``'s embeddings when they change.

        Inside the denoising loop ``prompt_embeds`` (and SDXL's ``add_text_embeds``) are
        ``cat([negative, positive])`` when classifier-free guidance is on, else the positive alone; the
        replacement keeps that layout, device and dtype.
        """
        if self._selection(step + 1) == self._selection(step):
            return callback_kwargs
        positive, negative = self.conditionings_at(step + 1)
        current = callback_kwargs.get("prompt_embeds")
        batch = positive.embeds.shape[0]
        if current is not None:
            guided = current.shape[0] == 2 * batch
            like = current
        else:
            guided = bool(getattr(pipeline, "do_classifier_free_guidance", False))
            like = positive.embeds
        embeds = torch.cat([negative.embeds, positive.embeds]) if guided else positive.embeds
        callback_kwargs["prompt_embeds"] = embeds.to(device=like.device, dtype=like.dtype)
        if positive.pooled is not None and negative.pooled is not None:
            pooled = torch.cat([negative.pooled, positive.pooled]) if guided else positive.pooled
            ref = callback_kwargs.get("add_text_embeds", pooled)
            callback_kwargs["add_text_embeds"] = pooled.to(device=ref.device, dtype=ref.dtype)
        return callback_kwargs
