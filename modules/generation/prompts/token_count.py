"""The token count shown beside a prompt box, as A1111 shows it ("12/75", "80/150"; "40/512" for FLUX).

The prompt is read as the generation reads it: ``<lora:...>``-style tags are removed, ``AND`` sub-prompts
and prompt editing (``[a:b:10]``, ``[a|b]``) are resolved into the texts the sampler will encode, and the
longest one is counted. For CLIP (SD 1.x/2.x/SDXL) the count is A1111's: emphasis brackets and weights
are not tokens, a textual-inversion embedding counts its vectors, ``BREAK`` fills the chunk it ends,
and the limit is the next multiple of 75 (the chunking of
:class:`modules.generation.prompts.conditioning.ChunkTokenizer` itself). For FLUX the T5
prompt has no weights (:func:`~modules.generation.prompts.parser.strip_attention`); its count includes
the end-of-text token and the limit is the family's ``max_sequence_length`` (text past it is cut off).

CPU only, and it never loads a model: the loaded model's CLIP tokenizer when there is one (a Python
tokenizer, safe beside the worker), else the tokenizer files shipped in ``configs/families/<family>/``
(always for T5); one :class:`TokenCounter` keeps those it read.
"""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from modules.generation.prompts.parser import (
    extract_extra_networks,
    get_learned_conditioning_prompt_schedules,
    get_multicond_prompt_list,
    strip_attention,
)

if TYPE_CHECKING:
    from modules.models.manager import ActiveModel

#: prompt tokens per CLIP chunk (A1111's 75; BOS and EOS make it 77)
CLIP_CHUNK = 75
#: the family whose shipped tokenizer counts when no model is loaded
DEFAULT_FAMILY = "sd1"
#: longest prompt counted (characters): a count is a hint, not a reason to tokenize megabytes
MAX_CHARS = 20_000


@dataclass(frozen=True)
class TokenCount:
    """``count`` tokens against ``limit`` (the next chunk boundary for CLIP, the T5 maximum for FLUX)."""

    count: int
    limit: int
    encoder: str  # "clip" | "t5"

    @property
    def text(self) -> str:
        return f"{self.count}/{self.limit}"

    @property
    def over(self) -> bool:
        """Whether text is lost (only T5 truncates; CLIP adds a chunk)."""
        return self.encoder == "t5" and self.count > self.limit


def encoded_texts(prompt: str, steps: int = 20) -> list[str]:
    """The texts the sampler will encode for ``prompt``: tags removed, AND split, prompt editing resolved."""
    clean, _ = extract_extra_networks(prompt or "")
    _, flat, _ = get_multicond_prompt_list([clean])
    schedules = get_learned_conditioning_prompt_schedules(flat, max(1, int(steps)))
    return [text for schedule in schedules for _, text in schedule] or [""]


def clip_target(count: int) -> int:
    """A1111's limit shown beside a count: the next multiple of 75 (at least 75)."""
    return math.ceil(max(count, 1) / CLIP_CHUNK) * CLIP_CHUNK


#: what stands for one embedding vector in a counted text: one CLIP token, never a comma
VECTOR_WORD = "a"


def with_embedding_vectors(texts: Sequence[str], vectors: Mapping[str, int]) -> list[str]:
    """Each embedding name (a whole word, any case, as the generation finds it) replaced by one
    one-token word per vector of the embedding: A1111 counts an embedding as its vectors."""
    if not vectors:
        return list(texts)
    lookup = {name.lower(): " ".join([VECTOR_WORD] * max(1, count)) for name, count in vectors.items()}
    names = sorted(vectors, key=len, reverse=True)
    pattern = re.compile(r"(?<!\w)(?:" + "|".join(re.escape(n) for n in names) + r")(?!\w)", re.IGNORECASE)
    return [pattern.sub(lambda m: lookup[m.group(0).lower()], text) for text in texts]


def clip_token_count(tokenizer: Any, prompt: str, steps: int = 20,
                     vectors: Callable[[Sequence[str]], Mapping[str, int]] | None = None) -> TokenCount:
    """The A1111 count of ``prompt`` with a CLIP tokenizer (the longest of its encoded texts);
    ``vectors`` gives the vector count of each embedding named in the texts."""
    from modules.generation.prompts.conditioning import ChunkTokenizer

    chunker = ChunkTokenizer(tokenizer)
    texts = encoded_texts(prompt, steps)
    if vectors is not None:
        texts = with_embedding_vectors(texts, vectors(texts))
    count = max(chunker.tokenize_line(text)[1] for text in texts)
    return TokenCount(count, clip_target(count), "clip")


def embedding_vector_counts(dirs: Sequence[Path], cache: Callable[[], Any] | None = None
                            ) -> Callable[[Sequence[str]], dict[str, int]]:
    """For :class:`TokenCounter`: the vector count of each embedding file (in ``dirs``) named in some texts;
    an unreadable file is left as text, as the generation leaves it. ``cache`` returns the studio's
    ``EmbeddingCache`` (or None); it is called only when there are embedding files."""
    def counts(texts: Sequence[str]) -> dict[str, int]:
        from modules.generation.addons.network_files import list_files

        if not list_files(dirs, (".safetensors", ".pt", ".bin")):
            return {}  # no embeddings: torch is not imported for a count
        from modules.generation.addons.embeddings import EmbeddingError, EmbeddingLibrary, read_embedding

        found: dict[str, int] = {}
        files = cache() if cache is not None else None
        for name, path in EmbeddingLibrary(tuple(Path(d) for d in dirs)).used_in(texts).items():
            try:
                found[name] = (files.get(path, read_embedding) if files is not None else read_embedding(path)).count
            except (EmbeddingError, OSError):
                continue
        return found

    return counts


def t5_token_count(tokenizer: Any, prompt: str, limit: int, steps: int = 20) -> TokenCount:
    """The T5 count of ``prompt`` (end-of-text token included) against ``limit``."""
    texts = [strip_attention(text) for text in encoded_texts(prompt, steps)]
    ids = tokenizer(texts, truncation=False, add_special_tokens=True)["input_ids"]
    return TokenCount(max(len(row) for row in ids), limit, "t5")


class TokenCounter:
    """Counts prompts with the loaded model's tokenizer, else with the default family's shipped one.

    ``active`` returns the loaded model (or None); ``cache_dir`` holds the CLIP vocabulary generated
    from open-clip-torch (:mod:`modules.models.tokenizers`). One instance per UI keeps the shipped
    tokenizers it read, so only the first count without a model reads files.
    """

    def __init__(self, active: Callable[[], "ActiveModel | None"], cache_dir: Path,
                 default_family: str = DEFAULT_FAMILY,
                 vectors: Callable[[Sequence[str]], Mapping[str, int]] | None = None) -> None:
        self._active = active
        self._vectors = vectors
        self._cache_dir = Path(cache_dir)
        self._default_family = default_family
        self._shipped: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._t5_lock = threading.Lock()

    def count(self, prompt: str, steps: int = 20) -> TokenCount:
        prompt = (prompt or "")[:MAX_CHARS]
        active = self._active()
        if active is not None:
            model = active.model
            if model.family.architecture == "flux":
                from modules.generation.validation import MAX_SEQUENCE_LENGTH

                # the shipped T5 tokenizer (the same vocabulary), never the pipeline's: a fast tokenizer
                # must not be called from two threads at once, and the device worker calls the pipeline's
                with self._t5_lock:
                    return t5_token_count(self._shipped_t5(model.family.id), prompt,
                                          MAX_SEQUENCE_LENGTH.get(model.family.id, 512), steps)
            tokenizer = (getattr(model.pipeline, "tokenizer", None) or getattr(model.pipeline, "tokenizer_2", None)
                         or self._shipped_clip(model.family.id))
            return clip_token_count(tokenizer, prompt, steps, self._vectors)
        return clip_token_count(self._shipped_clip(self._default_family), prompt, steps, self._vectors)

    def _shipped_clip(self, family_id: str) -> Any:
        from modules.models.families import get_family
        from modules.models.tokenizers import load_clip_tokenizer

        def load() -> Any:
            folder = get_family(family_id).config_path
            name = "tokenizer" if (folder / "tokenizer").is_dir() else "tokenizer_2"
            return load_clip_tokenizer(folder / name, self._cache_dir)

        return self._cached(f"clip:{family_id}", load)

    def _shipped_t5(self, family_id: str) -> Any:
        from modules.models.families import get_family
        from modules.models.flux_loader import t5_tokenizer_dir

        def load() -> Any:
            from transformers import T5TokenizerFast

            return T5TokenizerFast.from_pretrained(str(t5_tokenizer_dir(get_family(family_id))),
                                                   local_files_only=True)

        return self._cached(f"t5:{family_id}", load)

    def _cached(self, key: str, load: Callable[[], Any]) -> Any:
        with self._lock:
            if key not in self._shipped:
                self._shipped[key] = load()
            return self._shipped[key]
