"""The CLIP BPE tokenizer, generated offline from the vocabulary that ships inside open-clip-torch.

The 1.6 MB ``vocab.json``/``merges.txt`` pair is not committed: it is rebuilt once into the cache from
``open_clip/bpe_simple_vocab_16e6.txt.gz`` exactly as open_clip's ``SimpleTokenizer`` builds its table
(49408 entries, the ids of the released CLIP tokenizer). The shipped ``tokenizer_config.json`` /
``special_tokens_map.json`` of each family supply the rest (SD 2.x/SDXL OpenCLIP tokenizers pad with "!").
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import CLIPTokenizer

BPE_RESOURCE = ("open_clip", "bpe_simple_vocab_16e6.txt.gz")
VOCAB_SIZE = 49408
#: open_clip keeps ``merges[1 : 49152 - 256 - 2 + 1]`` (line 0 is a version header).
MERGES_END = 49152 - 256 - 2 + 1
SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")
CACHE_SUBDIR = "clip-bpe-49408"


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP reversible byte -> printable unicode table."""
    printable = [
        *range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)
    ]
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes)))


def build_clip_vocab(bpe_text: str) -> tuple[list[str], list[str]]:
    """Return (vocabulary in id order, merge lines) from the open_clip BPE file contents."""
    merges = bpe_text.split("\n")[1:MERGES_END]
    base = list(bytes_to_unicode().values())
    vocab = base + [token + "</w>" for token in base]
    vocab.extend("".join(merge.split(" ")) for merge in merges)
    vocab.extend(SPECIAL_TOKENS)
    return vocab, merges


def clip_tokenizer_dir(cache_dir: Path) -> Path:
    """Return a folder holding ``vocab.json`` + ``merges.txt``, generating them on first use."""
    target = Path(cache_dir) / CACHE_SUBDIR
    if (target / "vocab.json").is_file() and (target / "merges.txt").is_file():
        return target
    target.mkdir(parents=True, exist_ok=True)
    raw = resources.files(BPE_RESOURCE[0]).joinpath(BPE_RESOURCE[1]).read_bytes()
    vocab, merges = build_clip_vocab(gzip.decompress(raw).decode("utf-8"))
    if len(vocab) != VOCAB_SIZE:
        raise RuntimeError(f"open_clip BPE file gave {len(vocab)} tokens, expected {VOCAB_SIZE}")
    _write_atomic(target / "merges.txt", "#version: 0.2\n" + "\n".join(merges) + "\n")
    _write_atomic(target / "vocab.json", json.dumps({tok: i for i, tok in enumerate(vocab)}, ensure_ascii=False))
    return target


def _write_atomic(path: Path, text: str) -> None:
    """Write via a temp file + rename so concurrent first uses never see a half-written file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def _token_text(value: object) -> str | None:
    """Special tokens are stored either as strings or as AddedToken dicts with ``content``."""
    if isinstance(value, dict):
        content = value.get("content")
        return content if isinstance(content, str) else None
    return value if isinstance(value, str) else None


def tokenizer_kwargs(config_dir: Path) -> dict[str, object]:
    """Special tokens and max length from a shipped tokenizer folder's JSON files."""
    kwargs: dict[str, object] = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        path = Path(config_dir) / name
        if not path.is_file():
            continue
        data = json.loads(path.read_text(encoding="utf-8"))
        for key in ("bos_token", "eos_token", "unk_token", "pad_token"):
            token = _token_text(data.get(key))
            if token is not None:
                kwargs[key] = token
        if isinstance(data.get("model_max_length"), int):
            kwargs["model_max_length"] = data["model_max_length"]
    return kwargs


def load_clip_tokenizer(config_dir: Path, cache_dir: Path) -> "CLIPTokenizer":
    """A CLIPTokenizer for a shipped tokenizer folder; uses the folder's own vocab when it has one."""
    from transformers import CLIPTokenizer

    config_dir = Path(config_dir)
    if (config_dir / "vocab.json").is_file() and (config_dir / "merges.txt").is_file():
        return CLIPTokenizer.from_pretrained(str(config_dir), local_files_only=True)
    return CLIPTokenizer.from_pretrained(
        str(clip_tokenizer_dir(cache_dir)), local_files_only=True, **tokenizer_kwargs(config_dir)
    )
