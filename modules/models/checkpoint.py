"""Read key shapes and tensors from a single-file checkpoint (safetensors, or opted-in pickle)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from modules.models.errors import ModelLoadError
from modules.models.header import read_safetensors_header

if TYPE_CHECKING:
    from torch import Tensor

#: Suffixes of pickle-based checkpoints: refused unless the caller opts in.
PICKLE_SUFFIXES = frozenset({".ckpt", ".pt", ".pth", ".bin"})
Shapes = dict[str, tuple[int, ...]]


def is_pickle(path: Path) -> bool:
    """True for pickle checkpoint suffixes."""
    return Path(path).suffix.lower() in PICKLE_SUFFIXES


def _refuse_pickle(path: Path) -> ModelLoadError:
    return ModelLoadError(
        path, "pickle checkpoints can run code when loaded; convert it to .safetensors, or start Atelier with --allow-pickle to load it with torch weights_only"
    )


def read_shapes(path: Path, *, allow_pickle: bool = False) -> tuple[Shapes, dict[str, str]]:
    """Key shapes and metadata; for safetensors only the header is read."""
    path = Path(path)
    if is_pickle(path):
        if not allow_pickle:
            raise _refuse_pickle(path)
        state, metadata = load_state_dict(path, allow_pickle=True)
        return {key: tuple(value.shape) for key, value in state.items()}, metadata
    header = read_safetensors_header(path)
    return header.shapes(), header.metadata


def load_state_dict(path: Path, *, allow_pickle: bool = False) -> tuple[dict[str, "Tensor"], dict[str, str]]:
    """All tensors (on CPU) and the metadata of a checkpoint file."""
    path = Path(path)
    if is_pickle(path):
        if not allow_pickle:
            raise _refuse_pickle(path)
        return _load_pickle(path), {}
    header = read_safetensors_header(path)
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu"), header.metadata
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelLoadError(path, f"cannot read tensors ({exc})") from exc


def _load_pickle(path: Path) -> dict[str, "Tensor"]:
    """``torch.load(weights_only=True)``: only tensors and plain containers are unpickled."""
    import pickle

    import torch

    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, AttributeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(path, f"pickle file rejected by the weights-only loader ({reason})") from exc
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ModelLoadError(path, f"pickle file holds a {type(obj).__name__}, not a state dict")
    tensors = {key: value for key, value in obj.items() if isinstance(key, str) and torch.is_tensor(value)}
    if not tensors:
        raise ModelLoadError(path, "pickle file holds no tensors")
    return tensors
