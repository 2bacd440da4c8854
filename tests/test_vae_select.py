"""VAE selection: Automatic / None / a file, LDM and diffusers layouts, exact weights, restoration,
clear refusals, the hook's infotext, and a job-level switch through the txt2img runner."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from modules.generation.addons.hooks import SamplingContext
from modules.generation.addons.vae_select import (VaeCache, VaeSelectError, resolve_vae, selected_vae, vae_hook,
                                           vae_infotext)
from modules.models.hashing import HashCache
from tests.fixtures.tiny_models import build_tiny_components, tiny_configs
from tests.fixtures.tiny_networks import ldm_vae_file, write_safetensors


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_resolve_choices(tmp_path) -> None:
    ckpt = _touch(tmp_path / "sd" / "dream.safetensors")
    vae_dir = tmp_path / "VAE"
    assert resolve_vae("Automatic", ckpt, vae_dir) is None
    by_prefix = _touch(vae_dir / "dream-fix.safetensors")
    assert resolve_vae("Automatic", ckpt, vae_dir) == by_prefix
    near = _touch(tmp_path / "sd" / "dream.vae.pt")
    assert resolve_vae(None, ckpt, vae_dir) == near
    assert resolve_vae("None", ckpt, vae_dir) is None
    other = _touch(vae_dir / "sub" / "Other.ckpt")
    assert resolve_vae("Other.ckpt", ckpt, vae_dir) == other
    assert resolve_vae("other", ckpt, vae_dir) == other
    with pytest.raises(VaeSelectError, match=r"VAE 'nope' not found .*available: dream-fix.safetensors, Other.ckpt"):
        resolve_vae("nope", ckpt, vae_dir)


@pytest.fixture(scope="module")
def own_and_other():
    own = build_tiny_components("sd1", seed=0)
    other = build_tiny_components("sd1", seed=7)["vae"]
    return own, other


class _Model:
    """The bits of LoadedModel that VAE selection reads."""

    def __init__(self, path: Path, pipeline) -> None:
        self.path, self.pipeline = path, pipeline


class _Pipe:
    def __init__(self, vae) -> None:
        self.vae = vae


def _params_equal(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_file_replaces_the_vae_exactly_and_is_restored(own_and_other, tmp_path) -> None:
    own, other = own_and_other
    ldm = ldm_vae_file(tmp_path / "VAE" / "other.safetensors", other, prefix="first_stage_model.")
    write_safetensors(tmp_path / "VAE" / "diffusers.safetensors", other.state_dict())
    pipe = _Pipe(own["vae"])
    model = _Model(_touch(tmp_path / "m.safetensors"), pipe)
    cache = VaeCache()
    for name in ("other.safetensors", "diffusers"):
        with selected_vae(model, name, tmp_path / "VAE", cache) as used:  # type: ignore[arg-type]
            assert used is not None and pipe.vae is not own["vae"]
            assert _params_equal(pipe.vae, other)
        assert pipe.vae is own["vae"]
    with selected_vae(model, "None", tmp_path / "VAE", cache) as used:  # type: ignore[arg-type]
        assert used is None and pipe.vae is own["vae"]
    assert cache.get(ldm, own["vae"]) is cache.get(ldm, own["vae"])


def test_vae_for_another_model_is_refused(own_and_other, tmp_path) -> None:
    from diffusers import AutoencoderKL

    configs = tiny_configs("sd1")
    wider = AutoencoderKL.from_config({**configs["vae"], "block_out_channels": [16, 16, 16, 16]})
    ldm_vae_file(tmp_path / "VAE" / "wide.safetensors", wider)
    write_safetensors(tmp_path / "VAE" / "junk.safetensors", {"a": torch.zeros(1)})
    model = _Model(_touch(tmp_path / "m.safetensors"), _Pipe(own_and_other[0]["vae"]))
    with pytest.raises(VaeSelectError, match="'wide.safetensors' does not fit the loaded model"):
        with selected_vae(model, "wide", tmp_path / "VAE", VaeCache()):  # type: ignore[arg-type]
            pass
    with pytest.raises(VaeSelectError, match="is not a VAE"):
        with selected_vae(model, "junk", tmp_path / "VAE", VaeCache()):  # type: ignore[arg-type]
            pass


def test_hook_swaps_per_call_and_writes_infotext(own_and_other, tmp_path) -> None:
    own, other = own_and_other
    path = ldm_vae_file(tmp_path / "VAE" / "other.safetensors", other)
    hashes = HashCache(tmp_path / "h.json")
    pipe = _Pipe(own["vae"])
    model = _Model(_touch(tmp_path / "m.safetensors"), pipe)
    ctx = SamplingContext(pipe=pipe, model=model, req=None, task="txt2img", prompts=["a"], negatives=[""],  # type: ignore[arg-type]
                          seeds=[1], batch_index=0)
    cache = VaeCache()
    with vae_hook("other.safetensors", tmp_path / "VAE", hashes, cache)(ctx):
        assert _params_equal(pipe.vae, other)
    assert pipe.vae is own["vae"]
    assert ctx.infotext_params == {"VAE hash": hashes.sha256(path)[:10], "VAE": "other.safetensors"}
    assert vae_infotext(path, None) == {"VAE": "other.safetensors"}
    with selected_vae(model, "other.safetensors", tmp_path / "VAE", cache):  # type: ignore[arg-type]
        inside = pipe.vae
        with vae_hook("other.safetensors", tmp_path / "VAE", hashes, cache)(ctx):
            assert pipe.vae is inside
    quiet = SamplingContext(pipe=pipe, model=model, req=None, task="txt2img", prompts=["a"], negatives=[""],  # type: ignore[arg-type]
                            seeds=[1], batch_index=0)
    with vae_hook("Automatic", tmp_path / "VAE", hashes, cache)(quiet):
        assert pipe.vae is own["vae"]
    assert quiet.infotext_params == {}


def test_through_the_txt2img_runner(tiny_checkpoints, model_cache_dir, own_and_other, tmp_path) -> None:
    from modules.generation.requests import Txt2ImgRequest
    from modules.generation.runners.txt2img import OutputOptions, run_txt2img
    from modules.jobs.progress import JobControl
    from modules.models.catalog import CheckpointInfo
    from modules.models.loader import LoadOptions, load_model
    from modules.models.manager import ActiveModel

    ckpt = tiny_checkpoints["sd1"]["single"]
    model = load_model(ckpt, LoadOptions(cache_dir=model_cache_dir))
    model.pipeline.set_progress_bar_config(disable=True)
    active = ActiveModel(info=CheckpointInfo(ckpt, ckpt.name, False), model=model, sha256="0" * 64, load_seconds=0)
    vae_dir = tmp_path / "VAE"
    ldm_vae_file(vae_dir / "other.safetensors", own_and_other[1])
    cache, hashes = VaeCache(), HashCache(tmp_path / "h.json")

    def run(choice: str):
        req = Txt2ImgRequest(prompt="a red circle", steps=2, width=64, height=64, seed=5, sampler_name="Euler")
        hooks = [vae_hook(choice, vae_dir, hashes, cache)]
        with selected_vae(model, choice, vae_dir, cache):
            return run_txt2img(req, active, JobControl(), OutputOptions(save=False, outdir=tmp_path), hooks=hooks)

    own, none, other = run("Automatic"), run("None"), run("other.safetensors")
    assert own.images[0].tobytes() == none.images[0].tobytes()
    assert own.images[0].tobytes() != other.images[0].tobytes()
    assert "VAE hash: " in other.infotexts[0] and "VAE: other.safetensors" in other.infotexts[0]
    assert "VAE" not in own.infotexts[0]
