"""Shared pytest fixtures, and the ``slow`` marker for every test that starts a studio.

``./test.sh`` runs everything; ``./test.sh -m "not slow"`` leaves out the tests that start servers or
subprocesses or run models at length (marked here for the server fixtures, with ``@pytest.mark.slow`` elsewhere).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import pytest
import torch

if TYPE_CHECKING:
    from tests.helpers.server import StudioFactory

# Tiny test models gain nothing from a second thread, and on a shared 2-core machine two
# threads per process oversubscribe the CPU (tiny pipeline calls measured 0.06 s vs 22 s).
torch.set_num_threads(1)

# A Ray the tests start stays on 127.0.0.1, as `--ray auto` keeps it (modules/distributed/ray_workers.py
# prepare_local_ray); the Ray test modules import Ray at collection, before a studio could say so.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


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


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, model_cache_dir: Path) -> Callable[..., Path]:
    """``tiny_model("sd1", fmt="single", seed=0)``: one tiny random-weight checkpoint (``tiny-sd1.safetensors``,
    or a diffusers folder), built the first time it is asked for and reused for the rest of the session.
    Treat it as read-only: copy it where a test changes it (``studio_factory`` does)."""
    from tests.fixtures.tiny_models import build_tiny_checkpoint

    built: dict[tuple[str, str, int], Path] = {}

    def get(family: str = "sd1", fmt: str = "single", seed: int = 0) -> Path:
        key = (family, fmt, seed)
        if key not in built:
            out = tmp_path_factory.mktemp(f"tiny-{family}-{fmt}-{seed}")
            built[key] = build_tiny_checkpoint(family, out, fmt=fmt, seed=seed, cache_dir=model_cache_dir)
        return built[key]

    return get


def _studio_factory(tmp_path_factory: pytest.TempPathFactory,
                    tiny_model: Callable[..., Path]) -> Iterator["StudioFactory"]:
    from tests.helpers.server import StudioFactory  # the app and uvicorn: imported when a test needs a studio

    factory = StudioFactory(tmp_path_factory.mktemp, tiny_model)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(scope="module")
def studio_factory(tmp_path_factory: pytest.TempPathFactory,
                   tiny_model: Callable[..., Path]) -> Iterator["StudioFactory"]:
    """Start real studios (uvicorn on a free port) on tiny models; all of them stop at the end of the module.

    ``studio_factory(argv, with_ui=None, models=("sd1",), load=True, own_ckpt_dir=False, prepare=None)`` returns
    a started :class:`tests.helpers.server.RunningServer` with the first model loaded (see :class:`StudioFactory`).
    Every test that uses it is marked ``slow``."""
    yield from _studio_factory(tmp_path_factory, tiny_model)


@pytest.fixture(scope="session")
def session_studio_factory(tmp_path_factory: pytest.TempPathFactory,
                           tiny_model: Callable[..., Path]) -> Iterator["StudioFactory"]:
    """:func:`studio_factory` for session-scoped studios (the browser tests share one)."""
    yield from _studio_factory(tmp_path_factory, tiny_model)


# Tests that use these fixtures start a real server: they are marked slow (``-m "not slow"`` leaves them out).
SERVER_FIXTURES = frozenset({"studio_factory", "session_studio_factory"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())) and item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any socket connection and put the Hugging Face hub client offline for the test."""

    def refuse(self: socket.socket, *args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: connect{args}")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
