"""safetensors header reading and validation (no tensor data is read)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from modules.models.errors import ModelLoadError
from modules.models.header import read_safetensors_header


def _write(path: Path, header: dict, data: bytes) -> Path:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


@pytest.fixture
def valid_file(tmp_path: Path) -> Path:
    path = tmp_path / "weights.safetensors"
    save_file({"a.weight": torch.zeros(3, 4), "b": torch.ones(2, dtype=torch.float16)}, str(path),
              metadata={"modelspec.resolution": "64x64"})
    return path


def test_reads_keys_shapes_dtypes_offsets_and_metadata(valid_file: Path) -> None:
    header = read_safetensors_header(valid_file)
    assert set(header.tensors) == {"a.weight", "b"}
    assert header.tensors["a.weight"].shape == (3, 4)
    assert header.tensors["a.weight"].dtype == "F32"
    assert header.tensors["b"].dtype == "F16"
    start, end = header.tensors["a.weight"].offsets
    assert end - start == 3 * 4 * 4
    assert header.metadata == {"modelspec.resolution": "64x64"}
    assert header.file_size == valid_file.stat().st_size
    assert header.shapes() == {"a.weight": (3, 4), "b": (2,)}


def test_truncated_file_is_reported(valid_file: Path, tmp_path: Path) -> None:
    data = valid_file.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) - 5])
    with pytest.raises(ModelLoadError, match=r"cut\.safetensors.*truncated"):
        read_safetensors_header(cut)


def test_file_shorter_than_header_is_truncated(valid_file: Path, tmp_path: Path) -> None:
    cut = tmp_path / "tiny.safetensors"
    cut.write_bytes(valid_file.read_bytes()[:20])
    with pytest.raises(ModelLoadError, match="truncated"):
        read_safetensors_header(cut)


def test_empty_file_is_truncated(tmp_path: Path) -> None:
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(ModelLoadError, match="empty.safetensors.*truncated"):
        read_safetensors_header(empty)


def test_invalid_json_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "bad.safetensors"
    raw = b"{not json!"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    with pytest.raises(ModelLoadError, match="corrupt safetensors header.*JSON"):
        read_safetensors_header(path)


def test_absurd_header_length_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "huge.safetensors"
    path.write_bytes(struct.pack("<Q", 2**60) + b"{}")
    with pytest.raises(ModelLoadError, match="corrupt"):
        read_safetensors_header(path)


def test_offsets_beyond_data_are_truncation(tmp_path: Path) -> None:
    entry = {"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}
    path = _write(tmp_path / "short.safetensors", entry, b"\0" * 8)
    with pytest.raises(ModelLoadError, match="truncated.*'x'"):
        read_safetensors_header(path)


def test_size_not_matching_shape_is_corrupt(tmp_path: Path) -> None:
    entry = {"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}
    path = _write(tmp_path / "odd.safetensors", entry, b"\0" * 8)
    with pytest.raises(ModelLoadError, match="does not match its shape"):
        read_safetensors_header(path)


def test_non_string_metadata_is_corrupt(tmp_path: Path) -> None:
    header = {"__metadata__": {"steps": 5}, "x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}
    path = _write(tmp_path / "meta.safetensors", header, b"\0" * 4)
    with pytest.raises(ModelLoadError, match="__metadata__"):
        read_safetensors_header(path)


def test_header_reader_does_not_need_valid_tensor_data(valid_file: Path) -> None:
    data = bytearray(valid_file.read_bytes())
    header_len = struct.unpack("<Q", data[:8])[0]
    data[8 + header_len:] = b"\xff" * (len(data) - 8 - header_len)
    valid_file.write_bytes(bytes(data))
    assert read_safetensors_header(valid_file).tensors["a.weight"].shape == (3, 4)
