"""Every model family, in every on-disk layout, is detected, loaded through the shipped configs
and generates on the studio's queue (tiny random-weight models of the real architectures).

The A1111 API's part (model switch by title, request mapping, a refused request as a 400) is checked over
HTTP for two families (``HTTP_CASES``) and by the refusal tests below; the rest of the matrix runs in-process
on the same studio: the model switch and the job go through the same queue and submit path as the API's,
without the HTTP round trip.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import webuiapi

from modules.api.sdapi_models import SdTxt2ImgPayload
from modules.jobs.model import JobState
from modules.jobs.submit import submit_job
from tests.fixtures.flux_models import build_tiny_flux
from tests.helpers.server import RunningServer, load_and_wait

# (checkpoint key in the tiny_checkpoints fixture or flux variant, format, expected family id)
SD_CASES = [(fam, fmt) for fam in ("sd1", "sd2-512", "sd2-768-v", "sdxl", "sdxl-refiner")
            for fmt in ("single", "diffusers")]
FLUX_CASES = [("dev", "bfl"), ("schnell", "bfl"), ("dev", "bfl-prefixed"), ("schnell", "all-in-one"),
              ("dev", "diffusers")]
ALL_CASES = SD_CASES + [(f"flux-{v}", f) for v, f in FLUX_CASES]
# through the A1111 API over HTTP: one UNet family and one FLUX layout (the refusal test below reuses it)
HTTP_CASES = [("sd1", "single"), ("flux-schnell", "bfl")]
IN_PROCESS_CASES = [case for case in ALL_CASES if case not in HTTP_CASES]


@pytest.fixture(scope="module")
def family_server(studio_factory, tiny_checkpoints, tmp_path_factory: pytest.TempPathFactory):
    staging_root = tmp_path_factory.mktemp("families-flux")
    names: dict[tuple[str, str], str] = {}

    def place_every_family(data: Path, ckpt_dir: Path) -> None:
        for fam, fmt in SD_CASES:
            src = tiny_checkpoints[fam][fmt]
            dest = ckpt_dir / f"{fam}-{fmt}{src.suffix}"
            (shutil.copytree if src.is_dir() else shutil.copy)(src, dest)
            names[(fam, fmt)] = dest.name
        for variant, fmt in FLUX_CASES:
            staging = staging_root / f"flux-{variant}-{fmt}"
            path = build_tiny_flux(variant, staging, fmt=fmt)
            dest = ckpt_dir / f"flux-{variant}-{fmt}{path.suffix}"
            (shutil.copytree if path.is_dir() else shutil.copy)(path, dest)
            names[(f"flux-{variant}", fmt)] = dest.name
            for sub in ("text_encoder", "VAE"):
                if (staging / sub).is_dir():
                    shutil.copytree(staging / sub, data / "models" / sub, dirs_exist_ok=True)

    srv = studio_factory(["--nowebui"], models=(), name="families", prepare=place_every_family)
    return srv, names


def _switch(api: webuiapi.WebUIApi, name: str) -> None:
    title = next(m["title"] for m in api.get_sd_models() if m["title"].split(" [")[0] == name)
    api.util_set_model(title, find_closest=False)


def _switch_in_process(srv: RunningServer, name: str) -> None:
    path = next(p for p in srv.ctx.paths.ckpt_dirs[0].iterdir() if p.name == name)
    load_and_wait(srv.ctx, str(path))


@pytest.mark.parametrize("family, fmt", HTTP_CASES)
def test_family_generates_through_api(family_server, family: str, fmt: str) -> None:
    srv, names = family_server
    api = webuiapi.WebUIApi(host="127.0.0.1", port=srv.port)
    _switch(api, names[(family, fmt)])
    active = srv.ctx.models.active
    assert active.model.family.id == family
    sampler = "Euler" if family.startswith("flux") else "Euler a"
    result = api.txt2img(prompt="a red circle", width=64, height=64, steps=2, seed=7, sampler_name=sampler)
    assert result.images[0].size == (64, 64)
    assert result.images[0].getextrema() != ((0, 0), (0, 0), (0, 0))
    assert "Seed: 7, Size: 64x64" in result.info["infotexts"][0]


@pytest.mark.parametrize("family, fmt", IN_PROCESS_CASES)
def test_family_generates_in_process(family_server, family: str, fmt: str) -> None:
    """The same request as the API test, mapped the A1111 API's way, submitted and awaited on the queue."""
    srv, names = family_server
    _switch_in_process(srv, names[(family, fmt)])
    active = srv.ctx.models.active
    assert active.model.family.id == family
    if family == "sdxl-refiner":
        request = SdTxt2ImgPayload(prompt="a cat", width=64, height=64, steps=2).to_request()
        with pytest.raises(srv.ctx.kinds.of(request).user_errors) as info:  # the API answers these with a 400
            submit_job(srv.ctx, request, source="sdapi")
        assert "refine" in str(info.value)
        return
    sampler = "Euler" if family.startswith("flux") else "Euler a"
    request = SdTxt2ImgPayload(prompt="a red circle", width=64, height=64, steps=2, seed=7,
                               sampler_name=sampler).to_request()
    job = submit_job(srv.ctx, request, source="sdapi")
    srv.ctx.queue.wait(job.id, 120)
    assert job.state is JobState.SUCCEEDED, job.error
    result = job.result
    assert result.images[0].size == (64, 64)
    assert result.images[0].getextrema() != ((0, 0), (0, 0), (0, 0))
    assert "Seed: 7, Size: 64x64" in result.infotexts[0]


def test_flux_rejects_incompatible_sampler_with_clear_message(family_server) -> None:
    srv, names = family_server
    api = webuiapi.WebUIApi(host="127.0.0.1", port=srv.port)
    _switch(api, names[("flux-schnell", "bfl")])
    with pytest.raises(RuntimeError) as info:
        api.txt2img(prompt="x", width=64, height=64, steps=2, sampler_name="DDIM")
    assert "400" in str(info.value) and "DDIM" in str(info.value)


@pytest.mark.parametrize("kind", ["truncated", "pickle", "unknown-arch", "garbage"])
def test_bad_checkpoint_keeps_previous_model(family_server, kind: str) -> None:
    import httpx
    import torch
    from safetensors.torch import save_file

    srv, names = family_server
    api = webuiapi.WebUIApi(host="127.0.0.1", port=srv.port)
    _switch(api, names[("sd1", "single")])
    before = srv.ctx.models.active
    ckpt_dir = srv.ctx.paths.ckpt_dirs[0]
    good = ckpt_dir / names[("sd1", "single")]
    if kind == "truncated":
        bad = ckpt_dir / "bad-truncated.safetensors"
        bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif kind == "pickle":
        bad = ckpt_dir / "bad-pickle.ckpt"
        torch.save({"state_dict": {"x": torch.zeros(1)}}, bad)
    elif kind == "unknown-arch":
        bad = ckpt_dir / "bad-classifier.safetensors"
        save_file({"classifier.weight": torch.zeros(3, 4), "backbone.conv.weight": torch.zeros(4, 3, 3, 3)}, bad)
    else:
        bad = ckpt_dir / "bad-garbage.safetensors"
        bad.write_bytes(b"\x00\x01garbage" * 10)
    api.refresh_checkpoints()
    with httpx.Client(base_url=srv.base_url, timeout=60) as http:
        r = http.post("/sdapi/v1/options", json={"sd_model_checkpoint": bad.name})
        assert r.status_code == 422, r.text
        detail = r.json()["detail"]
        assert bad.name in detail and "Traceback" not in r.text
        assert srv.ctx.models.active is before  # the previous model stays loaded
        ok = http.post("/sdapi/v1/txt2img", json={"prompt": "x", "width": 64, "height": 64, "steps": 1})
        assert ok.status_code == 200
    bad.unlink()
    api.refresh_checkpoints()
