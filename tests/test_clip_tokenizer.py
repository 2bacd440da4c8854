"""The CLIP BPE tokenizer generated offline from open-clip-torch's vocabulary."""

from __future__ import annotations

import json
from pathlib import Path

from modules.models.families import get_family
from modules.models.tokenizers import VOCAB_SIZE, clip_tokenizer_dir, load_clip_tokenizer


def test_generated_vocabulary_matches_released_clip(model_cache_dir: Path) -> None:
    folder = clip_tokenizer_dir(model_cache_dir)
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    assert len(vocab) == VOCAB_SIZE == 49408
    assert vocab["<|startoftext|>"] == 49406 and vocab["<|endoftext|>"] == 49407 and vocab["!"] == 0
    merges = (folder / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert merges[0] == "#version: 0.2" and len(merges) == 1 + 48894
    assert clip_tokenizer_dir(model_cache_dir) == folder  # second call reuses the files


def test_sd1_and_sd2_tokenizers(model_cache_dir: Path) -> None:
    sd1 = load_clip_tokenizer(get_family("sd1").config_path / "tokenizer", model_cache_dir)
    sd2 = load_clip_tokenizer(get_family("sd2-512").config_path / "tokenizer", model_cache_dir)
    ids = [49406, 320, 1125, 539, 48136, 1929, 49407]
    assert sd1("a photo of sks dog").input_ids == ids == sd2("a photo of sks dog").input_ids
    assert sd1.model_max_length == sd2.model_max_length == 77
    assert (sd1.pad_token, sd1.pad_token_id) == ("<|endoftext|>", 49407)
    assert (sd2.pad_token, sd2.pad_token_id) == ("!", 0)
    padded = sd2("a photo", padding="max_length", max_length=6).input_ids
    assert padded == [49406, 320, 1125, 49407, 0, 0]
