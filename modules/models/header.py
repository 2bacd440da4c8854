"""Read and validate a safetensors header without touching tensor data (no torch needed)."""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

from modules.models.errors import ModelLoadError

#: Bytes per element for every safetensors dtype we know; unknown dtypes skip the size check.
DTYPE_SIZES: dict[str, float] = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
    "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1,
    "F8_E8M0": 1, "F4": 0.5, "C64": 8,
}
#: Upper bound for the JSON header (the reference implementation uses 100 MB).
MAX_HEADER_BYTES = 100_000_000


@dataclass(frozen=True)
class TensorInfo:
    """One tensor entry of the header."""

    dtype: str
    shape: tuple[int, ...]
    offsets: tuple[int, int]


@dataclass(frozen=True)
class SafetensorsHeader:
    """Parsed header: tensors by name, string metadata and the file size."""

    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]
    file_size: int

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Key -> shape mapping (what detection and config inference read)."""
        return {name: info.shape for name, info in self.tensors.items()}


def read_safetensors_header(path: Path) -> SafetensorsHeader:
    """Parse and validate the header of ``path``; raise ModelLoadError when it is unusable."""
    path = Path(path)
    try:
        file_size = path.stat().st_size
        with path.open("rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise ModelLoadError(path, f"file is truncated ({file_size} bytes, no safetensors header)")
            (header_len,) = struct.unpack("<Q", prefix)
            if header_len == 0 or header_len > MAX_HEADER_BYTES:
                raise ModelLoadError(path, f"corrupt safetensors header (declared header length {header_len})")
            if 8 + header_len > file_size:
                raise ModelLoadError(
                    path, f"file is truncated (header needs {8 + header_len} bytes, file has {file_size})"
                )
            raw = handle.read(header_len)
    except OSError as exc:
        raise ModelLoadError(path, f"cannot read file ({exc.strerror or exc})") from exc
    try:
        parsed = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(path, f"corrupt safetensors header (invalid JSON: {exc})") from exc
    if not isinstance(parsed, dict):
        raise ModelLoadError(path, "corrupt safetensors header (not a JSON object)")
    metadata = _parse_metadata(path, parsed.pop("__metadata__", None))
    data_size = file_size - 8 - header_len
    tensors = {name: _parse_entry(path, name, entry, data_size) for name, entry in parsed.items()}
    return SafetensorsHeader(tensors=tensors, metadata=metadata, file_size=file_size)


def _parse_metadata(path: Path, raw: object) -> dict[str, str]:
    """Validate the optional ``__metadata__`` block (string -> string)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        raise ModelLoadError(path, "corrupt safetensors header (__metadata__ must map strings to strings)")
    return dict(raw)


def _parse_entry(path: Path, name: str, entry: object, data_size: int) -> TensorInfo:
    """Validate one tensor entry: dtype, shape, offsets inside the file and consistent byte size."""
    if not isinstance(entry, dict):
        raise ModelLoadError(path, f"corrupt safetensors header (entry '{name}' is not an object)")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str) or not isinstance(shape, list) or not isinstance(offsets, list):
        raise ModelLoadError(path, f"corrupt safetensors header (entry '{name}' lacks dtype/shape/data_offsets)")
    if not all(isinstance(d, int) and d >= 0 for d in shape) or len(offsets) != 2:
        raise ModelLoadError(path, f"corrupt safetensors header (bad shape or offsets for '{name}')")
    start, end = offsets
    if not isinstance(start, int) or not isinstance(end, int) or not 0 <= start <= end:
        raise ModelLoadError(path, f"corrupt safetensors header (bad offsets for '{name}')")
    if end > data_size:
        raise ModelLoadError(
            path, f"file is truncated (tensor '{name}' ends at byte {end} of the data, only {data_size} present)"
        )
    itemsize = DTYPE_SIZES.get(dtype)
    if itemsize is not None and end - start != int(math.prod(shape) * itemsize):
        raise ModelLoadError(path, f"corrupt safetensors header (size of '{name}' does not match its shape)")
    return TensorInfo(dtype=dtype, shape=tuple(shape), offsets=(start, end))
