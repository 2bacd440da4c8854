"""Tests for model hashing and the hash cache."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import threading
from pathlib import Path

import pytest

from modules.models.hashing import (
    HashCache,
    addnet_hash_file,
    legacy_model_hash,
    sha256_file,
    shorthash,
)


class CountingHasher:
    """Wraps a hash function and counts how often it actually reads a file."""

    def __init__(self, inner=sha256_file) -> None:
        self.inner = inner
        self.calls: list[Path] = []
        self._lock = threading.Lock()

    def __call__(self, path: Path) -> str:
        with self._lock:
            self.calls.append(path)
        return self.inner(path)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _safetensors(path: Path, header: dict, payload: bytes) -> Path:
    encoded = json.dumps(header).encode("utf-8")
    return _write(path, struct.pack("<Q", len(encoded)) + encoded + payload)


def test_sha256_matches_hashlib_and_spans_blocks(tmp_path: Path) -> None:
    data = os.urandom(2 * 1024 * 1024 + 123)
    model = _write(tmp_path / "model.safetensors", data)
    expected = hashlib.sha256(data).hexdigest()
    assert sha256_file(model) == expected
    cache = HashCache(tmp_path / "cache" / "hashes.json")
    assert cache.sha256(model) == expected
    assert shorthash(expected) == expected[:10]
    assert shorthash(expected, 12) == expected[:12]


def test_cache_hit_does_not_reread_and_persists(tmp_path: Path) -> None:
    model = _write(tmp_path / "m.ckpt", b"weights" * 1000)
    cache_file = tmp_path / "cache" / "hashes.json"
    hasher = CountingHasher()
    cache = HashCache(cache_file, sha256_fn=hasher)
    assert cache.cached_sha256(model) is None
    first = cache.sha256(model)
    second = cache.sha256(model)
    assert first == second == hashlib.sha256(b"weights" * 1000).hexdigest()
    assert len(hasher.calls) == 1
    assert cache.cached_sha256(model) == first

    stored = json.loads(cache_file.read_text())
    entry = stored[os.path.abspath(model)]
    assert entry["sha256"] == first
    assert entry["size"] == model.stat().st_size
    assert entry["mtime"] == model.stat().st_mtime

    reloaded_hasher = CountingHasher()
    reloaded = HashCache(cache_file, sha256_fn=reloaded_hasher)
    assert reloaded.cached_sha256(model) == first
    assert reloaded.sha256(model) == first
    assert reloaded_hasher.calls == []


def test_touching_or_changing_file_invalidates(tmp_path: Path) -> None:
    model = _write(tmp_path / "m.safetensors", b"abc")
    hasher = CountingHasher()
    cache = HashCache(tmp_path / "hashes.json", sha256_fn=hasher)
    original = cache.sha256(model)
    stat = model.stat()
    os.utime(model, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    assert cache.cached_sha256(model) is None
    assert cache.sha256(model) == original
    assert len(hasher.calls) == 2

    _write(model, b"abcd")
    os.utime(model, ns=(stat.st_atime_ns, stat.st_mtime_ns + 9_000_000_000))
    assert cache.sha256(model) == hashlib.sha256(b"abcd").hexdigest()
    assert len(hasher.calls) == 3


def test_cached_sha256_never_computes_and_handles_missing(tmp_path: Path) -> None:
    hasher = CountingHasher()
    cache = HashCache(tmp_path / "hashes.json", sha256_fn=hasher)
    model = _write(tmp_path / "m.bin", b"x")
    assert cache.cached_sha256(model) is None
    assert cache.cached_sha256(tmp_path / "missing.bin") is None
    assert hasher.calls == []
    assert not (tmp_path / "hashes.json").exists()
    with pytest.raises(FileNotFoundError):
        cache.sha256(tmp_path / "missing.bin")


def test_addnet_hash_skips_safetensors_header(tmp_path: Path) -> None:
    payload = os.urandom(4096)
    lora = _safetensors(tmp_path / "lora.safetensors", {"__metadata__": {"ss_network_dim": "8"}}, payload)
    assert addnet_hash_file(lora) == hashlib.sha256(payload).hexdigest()
    other = _safetensors(tmp_path / "other.safetensors", {"__metadata__": {"name": "different"}}, payload)
    assert addnet_hash_file(other) == addnet_hash_file(lora)
    assert sha256_file(other) != sha256_file(lora)
    pt = _write(tmp_path / "lora.pt", b"pickled")
    assert addnet_hash_file(pt) == hashlib.sha256(b"pickled").hexdigest()

    hasher = CountingHasher(addnet_hash_file)
    cache = HashCache(tmp_path / "hashes.json", addnet_fn=hasher)
    assert cache.addnet_hash(lora) == hashlib.sha256(payload).hexdigest()
    assert cache.addnet_hash(lora) == cache.cached_addnet_hash(lora)
    assert len(hasher.calls) == 1
    assert cache.cached_sha256(lora) is None  # only the addnet hash was computed


def test_legacy_model_hash(tmp_path: Path) -> None:
    data = os.urandom(0x100000 + 0x10000 + 500)
    model = _write(tmp_path / "old.ckpt", data)
    assert legacy_model_hash(model) == hashlib.sha256(data[0x100000:0x110000]).hexdigest()[:8]
    small = _write(tmp_path / "small.ckpt", b"tiny")
    assert legacy_model_hash(small) == hashlib.sha256(b"").hexdigest()[:8]
    assert legacy_model_hash(tmp_path / "missing.ckpt") == "NOFILE"


def test_corrupt_cache_file_is_ignored(tmp_path: Path) -> None:
    cache_file = tmp_path / "hashes.json"
    cache_file.write_text("{not json")
    model = _write(tmp_path / "m.bin", b"data")
    cache = HashCache(cache_file)
    assert cache.sha256(model) == hashlib.sha256(b"data").hexdigest()
    assert json.loads(cache_file.read_text())[os.path.abspath(model)]["sha256"] == cache.sha256(model)


def test_two_caches_on_one_file_merge_entries(tmp_path: Path) -> None:
    cache_file = tmp_path / "hashes.json"
    first_model = _write(tmp_path / "a.bin", b"a")
    second_model = _write(tmp_path / "b.bin", b"b")
    HashCache(cache_file).sha256(first_model)
    HashCache(cache_file).sha256(second_model)  # a second process with its own instance
    stored = json.loads(cache_file.read_text())
    assert set(stored) == {os.path.abspath(first_model), os.path.abspath(second_model)}


def test_concurrent_hashing_is_consistent(tmp_path: Path) -> None:
    models = [_write(tmp_path / f"m{i}.bin", os.urandom(10_000)) for i in range(6)]
    cache = HashCache(tmp_path / "hashes.json")
    results: dict[str, str] = {}
    lock = threading.Lock()

    def worker(path: Path) -> None:
        value = cache.sha256(path)
        with lock:
            results[str(path)] = value

    threads = [threading.Thread(target=worker, args=(m,)) for m in models * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results == {str(m): hashlib.sha256(m.read_bytes()).hexdigest() for m in models}
    stored = json.loads((tmp_path / "hashes.json").read_text())
    assert len(stored) == 6
