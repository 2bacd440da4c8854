"""The Models inspector's native size is the size the model really makes (what the loader computes), read from
the header or the folder's configs without loading, not the family's usual size."""

from __future__ import annotations

from pathlib import Path

import pytest

from modules.models.detect import detect_checkpoint
from modules.models.loader import LoadOptions, load_model
from modules.models.native_size import native_size

REPO = Path(__file__).resolve().parents[1]
EMBEDDED = REPO / "models" / "Stable-diffusion" / "atelier-shapes-v1.safetensors"


@pytest.mark.parametrize("fmt, source", [("single", "the file's UNet and VAE"),
                                         ("diffusers", "the folder's UNet and VAE configs")])
def test_native_size_is_what_the_loader_makes(tiny_model, model_cache_dir: Path, fmt: str, source: str) -> None:
    path = tiny_model("sd1", fmt=fmt)
    detection = detect_checkpoint(path)
    loaded = load_model(path, LoadOptions(cache_dir=model_cache_dir))
    size, where = native_size(path, detection)
    assert (size, where) == (tuple(loaded.native_size), source)
    assert size != tuple(detection.family.default_size)  # a tiny model is not 512x512
    assert native_size(path, detection, loaded) == (tuple(loaded.native_size), "the loaded model")


def test_modelspec_resolution_wins(tiny_model, tmp_path: Path) -> None:
    from safetensors.numpy import load_file, save_file

    from modules.models.header import read_safetensors_header

    source = tiny_model("sd1", fmt="single")
    copy = tmp_path / "declared.safetensors"
    save_file(load_file(str(source)), str(copy),
              metadata={**read_safetensors_header(source).metadata, "modelspec.resolution": "96x64"})
    assert native_size(copy, detect_checkpoint(copy)) == ((96, 64), "the file's modelspec.resolution")


@pytest.mark.skipif(not EMBEDDED.is_file(), reason="the embedded default model is not in this checkout")
def test_embedded_model_is_64_not_the_families_512() -> None:
    size, _ = native_size(EMBEDDED, detect_checkpoint(EMBEDDED))
    assert size == (64, 64)


def test_models_inspector_shows_it(studio_factory) -> None:
    from webui.models_tab import inspect_html

    srv = studio_factory(["--nowebui"], models=("sd1",), load=False, name="native-size")
    info = srv.ctx.catalog.find(srv.checkpoints[0].name)
    (width, height), _ = native_size(info.path, detect_checkpoint(info.path))
    shown = inspect_html(srv.ctx, info)
    assert f"<th style='text-align:left;padding-right:1em;vertical-align:top'>Native size</th><td " in shown
    assert f"{width}x{height} (from the file&#x27;s UNet and VAE)" in shown
    assert (width, height) != (512, 512)
