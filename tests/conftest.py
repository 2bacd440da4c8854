"""Shared pytest fixtures (fixtures only)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch

# Tiny test models gain nothing from a second thread, and on a shared 2-core machine two
# threads per process oversubscribe the CPU (tiny pipeline calls measured 0.06 s vs 22 s).
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def model_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session cache folder (generated CLIP vocab/merges live here)."""
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory: pytest.TempPathFactory, model_cache_dir: Path) -> dict[str, dict[str, Path]]:
    """Tiny random-weight models of every SD family, built once per session.

    ``tiny_checkpoints[key][fmt]`` with key in sd1, sd1-inpaint, sd2-512, sd2-768-v, sdxl,
    sdxl-refiner and fmt "single" (``.safetensors`` in the original layout) or "diffusers" (folder).
    """
    from tests.fixtures.tiny_models import build_all

    return build_all(tmp_path_factory.mktemp("tiny-models"), model_cache_dir)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any socket connection and put the Hugging Face hub client offline for the test."""

    def refuse(self: socket.socket, *args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: connect{args}")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
