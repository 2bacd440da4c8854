"""Textual-inversion embeddings from ``models/embeddings``, used by writing their file name in a prompt.

Files (A1111 ``textual_inversion.py`` formats): ``.pt``/``.bin`` read with ``torch.load(weights_only=True)``
only (``string_to_param`` from A1111 training, or a diffusers ``{token: vector}`` concept) and
``.safetensors`` (``emb_params``; SDXL ``clip_l`` + ``clip_g``; or one tensor). An embedding whose vector
size does not fit the loaded model is skipped and the word stays plain text, as in A1111.

For one pipeline call, every embedding named in the prompts (whole word, case-insensitive, as A1111's
token match) gets placeholder tokens ``<ti-N>`` (``<ti-N>_1``... for multi-vector ones, diffusers'
convention) in a **copy** of each tokenizer, whose vectors are appended to a **new** input-embedding
table of the text encoder; the prompt text handed to the encoder has the names replaced by those tokens,
so the chunked A1111 encoder (:mod:`modules.generation.prompts.conditioning`) sees them without any change. On
exit the original tokenizers and embedding tables are put back (nothing of the model is modified).

Why not diffusers' ``load_textual_inversion``/``unload_textual_inversion``: they resize the shared
embedding with transformers' mean/covariance initialisation (O(vocab x dim^2) per call, warning logged),
mutate the shared tokenizer, and leave ``config.vocab_size`` changed after unloading.

CLIP configs with the legacy ``eos_token_id == 2`` take the pooled output at the *highest token id*,
which an added token would hijack (SDXL's pooled embedding); while tokens are added, the encoder is told
the tokenizer's real EOS id, which selects the same position for every ordinary prompt.
The infotext gets ``TI hashes: "name: <12-hex sha256>, ..."``.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import re
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

import torch
from torch import Tensor, nn

from modules.generation.addons.network_files import FileCache, list_files
from modules.generation.validation import InvalidRequestError

if TYPE_CHECKING:
    from modules.generation.addons.hooks import SamplingContext
    from modules.models.hashing import HashCache

log = logging.getLogger(__name__)

EMBEDDING_SUFFIXES = (".safetensors", ".pt", ".bin")
#: (tokenizer attribute, text encoder attribute, key of SDXL vectors)
_SLOTS = (("tokenizer", "text_encoder", "clip_l"), ("tokenizer_2", "text_encoder_2", "clip_g"))


class EmbeddingError(InvalidRequestError):
    """An embedding file that cannot be read (message for the user)."""


@dataclass(frozen=True)
class Embedding:
    """One TI embedding: ``vectors`` maps "" (single encoder) or clip_l/clip_g to (count, width) tensors."""

    name: str
    path: Path
    vectors: Mapping[str, Tensor]

    @property
    def count(self) -> int:
        return max(int(v.shape[0]) for v in self.vectors.values())

    @property
    def width(self) -> int:
        """A1111's embedding ``shape``: the vector size (SDXL: clip_l + clip_g)."""
        return sum(int(v.shape[-1]) for v in self.vectors.values())


def _as_matrix(value: Any, what: str) -> Tensor:
    if not torch.is_tensor(value) or value.dim() not in (1, 2):
        raise EmbeddingError(f"{what}: expected a vector or a (count, width) tensor")
    return (value.unsqueeze(0) if value.dim() == 1 else value).detach().to(torch.float32)


def embedding_vectors(data: Mapping[str, Any], what: str) -> dict[str, Tensor]:
    """The vectors of a loaded TI file, by A1111's rules."""
    if "string_to_param" in data:
        params = data["string_to_param"]
        if not isinstance(params, Mapping) or len(params) != 1:
            raise EmbeddingError(f"{what}: 'string_to_param' must hold exactly one tensor")
        return {"": _as_matrix(next(iter(params.values())), what)}
    if "clip_g" in data and "clip_l" in data:
        return {"clip_l": _as_matrix(data["clip_l"], what), "clip_g": _as_matrix(data["clip_g"], what)}
    if "emb_params" in data:
        return {"": _as_matrix(data["emb_params"], what)}
    tensors = [v for v in data.values() if torch.is_tensor(v)]
    if len(data) == 1 and len(tensors) == 1:
        return {"": _as_matrix(tensors[0], what)}
    raise EmbeddingError(f"{what}: not a textual-inversion embedding (no string_to_param, emb_params or clip_l/clip_g)")


def read_embedding(path: Path) -> Embedding:
    """Read one embedding file; EmbeddingError naming the file when it cannot be used."""
    path = Path(path)
    what = f"embedding '{path.name}'"
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            data: Any = load_file(str(path), device="cpu")
        else:
            data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file becomes one clear message
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EmbeddingError(f"{what} cannot be read ({reason[:200]})") from None
    if not isinstance(data, Mapping):
        raise EmbeddingError(f"{what} holds a {type(data).__name__}, not an embedding")
    return Embedding(name=path.stem, path=path, vectors=embedding_vectors(data, what))


class EmbeddingCache(FileCache[Embedding]):
    """Read embeddings keyed by path + size + mtime (owned by the caller)."""


@dataclass(frozen=True)
class EmbeddingLibrary:
    """The embedding files of some folders (``models/embeddings``)."""

    dirs: tuple[Path, ...]

    def files_by_name(self) -> dict[str, Path]:
        named: dict[str, Path] = {}
        for path in list_files(self.dirs, EMBEDDING_SUFFIXES):
            named.setdefault(path.stem, path)
        return named

    def used_in(self, texts: Sequence[str]) -> dict[str, Path]:
        """Embeddings whose name appears as a whole word (any case) in ``texts``."""
        named = self.files_by_name()
        if not named:
            return {}
        joined = "\n".join(texts)
        pattern = _name_pattern(named)
        found = {m.group(0).lower() for m in pattern.finditer(joined)}
        return {name: path for name, path in named.items() if name.lower() in found}


def _name_pattern(names: Sequence[str] | Mapping[str, Any]) -> re.Pattern[str]:
    ordered = sorted(names, key=len, reverse=True)
    return re.compile(r"(?<!\w)(?:" + "|".join(re.escape(n) for n in ordered) + r")(?!\w)", re.IGNORECASE)


# --------------------------------------------------------------------------- applying


def _slots(pipe: Any) -> list[tuple[str, str, str]]:
    return [slot for slot in _SLOTS if getattr(pipe, slot[0], None) is not None and getattr(pipe, slot[1], None) is not None]


def _width(encoder: nn.Module) -> int:
    return int(encoder.get_input_embeddings().weight.shape[-1])


def vectors_for(pipe: Any, embedding: Embedding) -> dict[str, Tensor] | None:
    """Text-encoder attribute -> vectors for this pipeline, or None when the embedding does not fit it."""
    slots = _slots(pipe)
    if len(slots) == 1:
        _, encoder_attr, _ = slots[0]
        vector = embedding.vectors.get("")
        if vector is None or vector.shape[-1] != _width(getattr(pipe, encoder_attr)):
            return None
        return {encoder_attr: vector}
    chosen: dict[str, Tensor] = {}
    for _, encoder_attr, key in slots:
        vector = embedding.vectors.get(key)
        if vector is None or vector.shape[-1] != _width(getattr(pipe, encoder_attr)):
            return None
        chosen[encoder_attr] = vector
    if len({int(v.shape[0]) for v in chosen.values()}) != 1:
        return None
    return chosen


def _token_names(index: int, count: int) -> list[str]:
    base = f"<ti-{index}>"
    return [base] + [f"{base}_{i}" for i in range(1, count)]


class TokenizerCopies:
    """Tokenizer copies with added tokens, reused across the passes of a job (copying costs ~0.3 s)."""

    def __init__(self, max_entries: int = 4) -> None:
        self.max_entries = max_entries
        self._entries: dict[tuple[int, tuple[str, ...]], tuple[weakref.ref[Any], Any]] = {}
        self._lock = threading.Lock()

    def with_tokens(self, tokenizer: Any, tokens: Sequence[str]) -> Any:
        key = (id(tokenizer), tuple(tokens))
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0]() is tokenizer:
                return entry[1]
        job_tokenizer = copy.deepcopy(tokenizer)
        job_tokenizer.add_tokens(list(tokens))
        with self._lock:
            while len(self._entries) >= self.max_entries:
                self._entries.pop(next(iter(self._entries)))
            self._entries[key] = (weakref.ref(tokenizer), job_tokenizer)
        return job_tokenizer


def _extended_table(original: nn.Embedding, ids: Sequence[int], vectors: Tensor) -> nn.Embedding:
    weight = original.weight
    rows = max(max(ids) + 1, weight.shape[0])
    table = torch.zeros(rows, weight.shape[1], dtype=weight.dtype, device=weight.device)
    table[: weight.shape[0]] = weight.detach()
    table[list(ids)] = vectors.to(device=weight.device, dtype=weight.dtype)
    return nn.Embedding.from_pretrained(table, freeze=True)


def _text_model(encoder: nn.Module) -> nn.Module:
    return getattr(encoder, "text_model", encoder)


@contextlib.contextmanager
def apply_embeddings(pipe: Any, embeddings: Sequence[Embedding],
                     copies: TokenizerCopies | None = None) -> Iterator[dict[str, str]]:
    """Add ``embeddings`` to ``pipe``'s tokenizers/text encoders for the duration; yields the replacement
    text (``<ti-0> <ti-0>_1 ...``) for each embedding name that fits the model (others are skipped)."""
    copies = copies or TokenizerCopies()
    replacements: dict[str, str] = {}
    per_encoder: dict[str, list[tuple[list[str], Tensor]]] = {}
    for embedding in embeddings:
        chosen = vectors_for(pipe, embedding)
        if chosen is None:
            log.warning("embedding '%s' (vector size %d) does not fit the loaded model; left as text",
                        embedding.name, embedding.width)
            continue
        tokens = _token_names(len(replacements), next(iter(chosen.values())).shape[0])
        replacements[embedding.name] = " ".join(tokens)
        for encoder_attr, vectors in chosen.items():
            per_encoder.setdefault(encoder_attr, []).append((tokens, vectors))
    restore: list[Callable[[], None]] = []
    try:
        for tokenizer_attr, encoder_attr, _ in _slots(pipe):
            if encoder_attr not in per_encoder:
                continue
            tokenizer, encoder = getattr(pipe, tokenizer_attr), getattr(pipe, encoder_attr)
            tokens = [t for names, _ in per_encoder[encoder_attr] for t in names]
            vectors = torch.cat([v for _, v in per_encoder[encoder_attr]])
            job_tokenizer = copies.with_tokens(tokenizer, tokens)
            original_table = encoder.get_input_embeddings()
            table = _extended_table(original_table, job_tokenizer.convert_tokens_to_ids(tokens), vectors)
            restore.append(functools.partial(setattr, pipe, tokenizer_attr, tokenizer))
            restore.append(functools.partial(encoder.set_input_embeddings, original_table))
            setattr(pipe, tokenizer_attr, job_tokenizer)
            encoder.set_input_embeddings(table)
            text_model = _text_model(encoder)
            eos = getattr(text_model, "eos_token_id", None)
            if eos == 2 and tokenizer.eos_token_id not in (None, 2):
                restore.append(functools.partial(setattr, text_model, "eos_token_id", eos))
                text_model.eos_token_id = tokenizer.eos_token_id
        yield replacements
    finally:
        for undo in reversed(restore):
            undo()


def replace_names(texts: Sequence[str], replacements: Mapping[str, str]) -> list[str]:
    """Each embedding name (whole word, any case) replaced by its tokens, in one pass."""
    if not replacements:
        return list(texts)
    lookup = {name.lower(): text for name, text in replacements.items()}
    pattern = _name_pattern(list(replacements))
    return [pattern.sub(lambda m: lookup[m.group(0).lower()], text) for text in texts]


def ti_hashes_text(embeddings: Sequence[Embedding], hashes: "HashCache") -> str:
    """A1111 ``TI hashes`` value: ``name: <first 12 hex of the file's SHA-256>`` joined by ", "."""
    return ", ".join(f"{e.name.replace(':', '').replace(',', '')}: {hashes.sha256(e.path)[:12]}" for e in embeddings)


class EmbeddingsHook:
    """A :data:`SamplingHook` adding the embeddings named in the prompts around each pipeline call."""

    def __init__(self, library: EmbeddingLibrary, hashes: "HashCache | None", cache: EmbeddingCache) -> None:
        self.library = library
        self.hashes = hashes
        self.cache = cache
        self.copies = TokenizerCopies()

    def __call__(self, ctx: "SamplingContext") -> contextlib.AbstractContextManager[None]:
        return self._applied(ctx)

    @contextlib.contextmanager
    def _applied(self, ctx: "SamplingContext") -> Iterator[None]:
        used = self.library.used_in([*ctx.prompts, *ctx.negatives])
        if not used or not _slots(ctx.pipe):
            yield
            return
        embeddings = [self.cache.get(path, read_embedding) for _, path in sorted(used.items())]
        with apply_embeddings(ctx.pipe, embeddings, self.copies) as replacements:
            if replacements:
                ctx.prompts = replace_names(ctx.prompts, replacements)
                ctx.negatives = replace_names(ctx.negatives, replacements)
                if self.hashes is not None:
                    fitting = [e for e in embeddings if e.name in replacements]
                    ctx.infotext_params["TI hashes"] = ti_hashes_text(fitting, self.hashes)
            yield


def embeddings_hook(embeddings_dir: Path | Sequence[Path], hashes: "HashCache | None",
                    cache: EmbeddingCache) -> EmbeddingsHook:
    """The textual-inversion :data:`SamplingHook` for the files in ``embeddings_dir`` (one or several)."""
    dirs = (Path(embeddings_dir),) if isinstance(embeddings_dir, (str, Path)) else tuple(Path(d) for d in embeddings_dir)
    return EmbeddingsHook(EmbeddingLibrary(dirs), hashes, cache)
