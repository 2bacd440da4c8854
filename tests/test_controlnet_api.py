"""The /controlnet/* routes as sd-webui-controlnet answers them (and as the webuiapi client calls them)."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.testclient import TestClient
from PIL import Image

from modules.api.controlnet_routes import build_controlnet_router
from modules.api.errors import install_error_handlers
from modules.generation.runners.img2img import encode_request_image


def _ctx(tmp_path: Path) -> SimpleNamespace:
    models = tmp_path / "models"
    (models / "ControlNet").mkdir(parents=True)
    return SimpleNamespace(paths=SimpleNamespace(controlnet_dir=models / "ControlNet", repo_root=tmp_path / "repo"))


@pytest.fixture
def client(tmp_path):
    """The routes over a real studio context (detection runs on its job queue); only the data dir's
    ControlNet folder is searched (not the repository's shipped one)."""
    from dataclasses import replace

    from modules.app_context import create_app_context
    from modules.flags import parse_flags

    ctx = create_app_context(parse_flags(["--data-dir", str(tmp_path / "data"), "--skip-load-model-at-start"]))
    ctx.paths = replace(ctx.paths, repo_root=tmp_path / "repo")
    (ctx.paths.controlnet_dir / "control_canny.safetensors").write_bytes(b"\0" * 16)
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(build_controlnet_router(ctx, annotators=ctx.addons.annotators))
    try:
        yield TestClient(app)
    finally:
        ctx.close()


def _picture() -> str:
    array = np.zeros((64, 96, 3), dtype=np.uint8)
    array[16:48, 24:72] = 255
    return encode_request_image(Image.fromarray(array))


def test_version_models_and_modules(client) -> None:
    assert client.get("/controlnet/version").json() == {"version": 2}
    models = client.get("/controlnet/model_list").json()["model_list"]
    assert len(models) == 1 and models[0].startswith("control_canny [") and models[0].endswith("]")
    modules = client.get("/controlnet/module_list").json()
    assert {"none", "canny", "invert", "threshold", "shuffle"} <= set(modules["module_list"])
    assert "openpose" not in modules["module_list"] and "facenet.pth" in modules["unavailable"]["openpose"]
    assert modules["module_detail"]["canny"]["sliders"][1]["name"] == "Canny Low Threshold"
    labels = client.get("/controlnet/module_list", params={"alias_names": True}).json()["module_list"]
    assert "invert (from white bg & black line)" in labels and "invert" not in labels


@pytest.mark.parametrize("key", ["controlnet_input_images", "controlnet_images"])
def test_detect_accepts_both_image_keys(client, key) -> None:
    body = {"controlnet_module": "canny", key: [_picture()], "controlnet_processor_res": 64,
            "controlnet_threshold_a": 100, "controlnet_threshold_b": 200}
    answer = client.post("/controlnet/detect", json=body)
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert data["info"] == "Success" and len(data["images"]) == 1
    image = Image.open(io.BytesIO(base64.b64decode(data["images"][0])))
    assert image.size == (96, 64) and np.asarray(image).max() == 255


def test_detect_errors_are_clear(client) -> None:
    missing = client.post("/controlnet/detect", json={"controlnet_module": "canny"})
    assert missing.status_code == 422 and "controlnet_input_images" in missing.json()["detail"]
    unknown = client.post("/controlnet/detect", json={"controlnet_module": "sobel", "controlnet_images": [_picture()]})
    assert unknown.status_code == 422 and "unknown ControlNet preprocessor 'sobel'" in unknown.json()["detail"]
    weights = client.post("/controlnet/detect", json={"controlnet_module": "depth_midas",
                                                      "controlnet_images": [_picture()]})
    assert weights.status_code == 422 and "dpt_hybrid-midas-501f0c75.pt" in weights.json()["detail"]
    broken = client.post("/controlnet/detect", json={"controlnet_module": "canny", "controlnet_images": ["!!"]})
    assert broken.status_code == 422 and "controlnet image 0" in broken.json()["detail"]


def test_dependencies_guard_every_route(tmp_path) -> None:
    def deny(request: Request) -> None:
        raise HTTPException(status_code=401, detail="no")

    app = FastAPI()
    app.include_router(build_controlnet_router(_ctx(tmp_path), [Depends(deny)]))  # type: ignore[arg-type]
    client = TestClient(app)
    assert client.get("/controlnet/version").status_code == 401
    assert client.post("/controlnet/detect", json={}).status_code == 401


def test_addon_hooks_for_a_job(tmp_path) -> None:
    from modules.generation.addons.caches import AddonCaches, addon_hooks
    from modules.generation.controlnet.hook import ControlNetHook
    from modules.generation.controlnet.units import parse_unit
    from modules.generation.addons.hooks import handled_network_kinds
    from modules.paths import resolve_paths

    paths = resolve_paths(tmp_path)
    caches = AddonCaches()
    plain = addon_hooks(paths, None, caches)
    assert len(plain) == 3 and handled_network_kinds(plain) == {"lora", "lyco"}
    with_cn = addon_hooks(paths, None, caches, units=[parse_unit({"model": "x", "module": "canny"})])
    assert isinstance(with_cn[-1], ControlNetHook)
    assert caches.annotators is not None and caches.annotators.folder == paths.controlnet_dir.parent / "annotators"
