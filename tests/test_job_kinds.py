"""The job-kind registry (issue 24.1/24.2): a kind declared once is dispatched by the queue, offered and
documented by the native API, checked by its one precheck at submit and in the worker; interrogate, Extras
and ControlNet detection are job kinds, so the A1111 routes wait behind the queue like txt2img."""

from __future__ import annotations

import base64
import io
import threading
import time
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict

from modules.jobs.kinds import JobKind, JobKindRegistry, UnknownJobKind
from tests.helpers.server import RunningServer


class EchoRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["echo"] = "echo"
    text: str = "hello"


class EchoError(ValueError):
    pass


def _echo_precheck(ctx: Any, request: EchoRequest) -> EchoRequest:
    if request.text == "bad":
        raise EchoError("text: 'bad' cannot be echoed")
    return request.model_copy(update={"text": request.text.strip()})


def _echo_run(ctx: Any, job: Any, control: Any) -> dict[str, str]:
    control.begin(1, 1, text="echoing")
    control.step(1)
    return {"echo": job.request.text.upper()}


ECHO = JobKind(name="echo", request=EchoRequest, run=_echo_run, precheck=_echo_precheck,
               describe=lambda result: dict(result), summary="Echo a text (a kind declared in a test).",
               user_errors=(EchoError,))


def test_a_kind_is_declared_once_and_refused_twice() -> None:
    registry = JobKindRegistry([ECHO])
    assert registry.get("echo") is ECHO and registry.names() == ["echo"]
    with pytest.raises(ValueError, match="declared twice"):
        registry.register(ECHO)
    with pytest.raises(ValueError, match="kind = 'other'"):
        registry.register(JobKind(name="other", request=EchoRequest, run=_echo_run))
    with pytest.raises(UnknownJobKind, match="unknown job kind 'nope'"):
        registry.get("nope")


def test_builtin_kinds_and_their_prechecks() -> None:
    from modules.job_kinds import builtin_kinds

    names = [kind.name for kind in builtin_kinds()]
    assert names == ["txt2img", "img2img", "img2img_batch", "load_model", "extras", "interrogate",
                     "controlnet_detect", "understand_caption", "understand_ask", "understand_extract",
                     "understand_check", "understand_chat", "understand_batch_caption", "classify", "classify_int8_check",
                     "classify_finetune", "gallery_index", "gallery_search", "train_lora", "train_embedding", "train_dreambooth",
                     "download_model",
                     "merge_models", "convert_model", "convert_lora", "flux_remote"]
    assert all(kind.precheck is not None for kind in builtin_kinds() if kind.name != "img2img_batch")


def _png(size: tuple[int, int] = (32, 24), colour: str = "red") -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def server(studio_factory) -> RunningServer:
    return studio_factory(["--api"], with_ui=False, name="kinds")


@pytest.mark.slow
def test_a_kind_added_in_one_place_runs_through_the_native_api(tmp_path: Path) -> None:
    """An extension-style kind registered before the routes are built: dispatched, offered, documented."""
    from modules.app_context import create_app_context
    from modules.flags import parse_flags
    from modules.server import create_http_app
    from fastapi.testclient import TestClient

    ctx = create_app_context(parse_flags(["--api", "--data-dir", str(tmp_path), "--skip-load-model-at-start"]))
    try:
        ctx.kinds.register(ECHO)
        client = TestClient(create_http_app(ctx, with_ui=False), base_url="http://localhost")
        doc = client.get("/openapi.json").json()
        body = doc["paths"]["/api/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        text = str(body) + str(doc["components"]["schemas"])
        for name in ("EchoJob", "Txt2imgJob", "ExtrasJob", "InterrogateJob", "ControlnetDetectJob"):
            assert name in text, name
        assert "Img2imgBatchJob" not in text  # not offered by the API
        refused = client.post("/api/v1/jobs", json={"kind": "echo", "request": {"text": "bad"}})
        assert refused.status_code == 400 and "'bad' cannot be echoed" in refused.json()["detail"]
        made = client.post("/api/v1/jobs", json={"kind": "echo", "request": {"text": "  hi  "}})
        assert made.status_code == 201, made.text
        job = ctx.queue.wait(made.json()["id"], 30)
        assert job.state.value == "succeeded" and job.result == {"echo": "HI"}
        result = client.get(f"/api/v1/jobs/{job.id}/result").json()
        assert result["info"] == {"echo": "HI"}
        unknown = client.post("/api/v1/jobs", json={"kind": "nope", "request": {}})
        assert unknown.status_code == 422
    finally:
        ctx.close()


@pytest.mark.slow
def test_device_work_waits_its_turn_on_the_queue(server: RunningServer) -> None:
    """interrogate, Extras and ControlNet detection are jobs: behind a running job they wait, then answer."""
    from modules.generation.requests import Txt2ImgRequest
    from modules.jobs.model import JobState

    ctx = server.ctx
    blocker = ctx.queue.submit(Txt2ImgRequest(prompt="blocker", steps=150, n_iter=50, width=64, height=64,
                                              save_images=False), owner="someone-else")
    answers: dict[str, Any] = {}

    def call(name: str, path: str, body: dict[str, Any]) -> None:
        with server.client() as http:
            answers[name] = http.post(path, json=body)

    calls = [("extras", "/sdapi/v1/extra-single-image", {"image": _png(), "upscaling_resize": 2,
                                                          "upscaler_1": "Lanczos"}),
             ("detect", "/controlnet/detect", {"controlnet_module": "canny", "controlnet_input_images": [_png()],
                                               "controlnet_processor_res": 32})]
    threads = [threading.Thread(target=call, args=c) for c in calls]
    try:
        deadline = time.monotonic() + 60
        while blocker.state is not JobState.RUNNING and time.monotonic() < deadline:
            time.sleep(0.05)
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            waiting = {job.kind for job in ctx.queue.jobs() if job.state is JobState.QUEUED}
            if {"extras", "controlnet_detect"} <= waiting:
                break
            time.sleep(0.05)
        assert {"extras", "controlnet_detect"} <= waiting, (waiting, blocker.state, blocker.error)
        assert not answers, "device work answered while another job held the device"
    finally:
        ctx.queue.cancel(blocker.id)
        for thread in threads:
            thread.join(60)
    assert answers["extras"].status_code == 200, answers["extras"].text
    assert answers["detect"].status_code == 200, answers["detect"].text
    from PIL import Image

    upscaled = Image.open(io.BytesIO(base64.b64decode(answers["extras"].json()["image"])))
    assert upscaled.size == (64, 48)


@pytest.mark.slow
def test_native_api_runs_the_new_kinds(server: RunningServer) -> None:
    with server.client() as http:
        made = http.post("/api/v1/jobs", json={"kind": "extras", "request": {
            "images": [_png()], "upscaling_resize": 2, "upscaler_1": "Nearest"}})
        assert made.status_code == 201, made.text
        job = server.ctx.queue.wait(made.json()["id"], 60)
        assert job.state.value == "succeeded", job.error
        result = http.get(f"/api/v1/jobs/{job.id}/result").json()
        saved = Path(result["images"][0]["path"])
        assert saved.parent.name == "extras-images" and saved.is_file()  # native-API jobs keep their outputs
        too_big = http.post("/api/v1/jobs", json={"kind": "extras", "request": {
            "images": [_png((4000, 4000))], "upscaling_resize": 4, "upscaler_1": "Lanczos"}})
        assert too_big.status_code == 413 and "pixel limit" in too_big.json()["detail"]
        broken = http.post("/api/v1/jobs", json={"kind": "controlnet_detect", "request": {
            "images": [_png()], "module": "sobel"}})
        assert broken.status_code == 400 and "unknown ControlNet preprocessor" in broken.json()["detail"]
        asked = http.post("/api/v1/jobs", json={"kind": "interrogate", "request": {"image": _png(), "model": "blip9"}})
        assert asked.status_code == 404 and "Model not found" in asked.json()["detail"]


@pytest.mark.slow
def test_img2img_variation_seeds_are_refused_before_queueing(server: RunningServer) -> None:
    """One precheck per kind: what the worker would refuse is refused at submit, by every door."""
    body = {"prompt": "x", "init_images": [_png()], "subseed_strength": 0.5, "steps": 2}
    with server.client() as http:
        waiting = server.ctx.queue.waiting_count()
        native = http.post("/api/v1/jobs", json={"kind": "img2img", "request": body})
        assert native.status_code == 400 and "variation seeds" in native.json()["detail"]
        a1111 = http.post("/sdapi/v1/img2img", json=body)
        assert a1111.status_code == 400 and "variation seeds" in a1111.json()["detail"]
        assert server.ctx.queue.waiting_count() == waiting


@pytest.mark.slow
def test_api_jobs_get_live_previews(server: RunningServer) -> None:
    """preview_every applies to API jobs as to UI jobs."""
    server.ctx.settings.update({"show_progress_every_n_steps": 1})
    with server.client() as http:
        made = http.post("/api/v1/jobs", json={"kind": "txt2img", "request": {"prompt": "p", "steps": 3,
                                                                             "width": 64, "height": 64}})
        job = server.ctx.queue.get(made.json()["id"])
        assert job is not None and job.control.preview_every == 1
        server.ctx.queue.wait(job.id, 60)


@pytest.mark.slow
def test_a_script_the_studio_lacks_is_refused_not_ignored(server: RunningServer) -> None:
    """Issue 24.6: a request naming a script the studio does not have must not come back as one plain image as
    if the script had run (A1111: 422 "Script '...' not found"; tests/test_api_scripts.py runs scripts)."""
    with server.client() as http:
        xyz = http.post("/sdapi/v1/txt2img", json={"prompt": "x", "steps": 2, "width": 64, "height": 64,
                                                  "script_name": "No such plot", "script_args": [1, "1,2"]})
        assert xyz.status_code == 422 and "Script 'No such plot' not found" in xyz.json()["detail"], xyz.text
        plain = http.post("/sdapi/v1/txt2img", json={"prompt": "x", "steps": 2, "width": 64, "height": 64,
                                                    "script_name": "", "script_args": []})
        assert plain.status_code == 200, plain.text


@pytest.mark.slow
def test_a_bad_image_is_a_400_naming_it(server: RunningServer) -> None:
    """The kinds' prechecks decode the images once before queueing (the routes do not decode them again)."""
    cases = (("/sdapi/v1/interrogate", {"image": ""}), ("/sdapi/v1/interrogate", {"image": "!!"}),
             ("/sdapi/v1/extra-single-image", {"image": "!!"}),
             ("/sdapi/v1/extra-batch-images", {"imageList": [{"data": "!!", "name": "a"}]}))
    with server.client() as http:
        for path, body in cases:
            answer = http.post(path, json=body)
            assert answer.status_code == 400 and answer.json()["error"] == "InvalidImage", (path, answer.text)
        batch = http.post("/sdapi/v1/extra-batch-images", json={"imageList": [{"data": "!!", "name": "a"}]})
        assert "imageList[0]" in batch.json()["detail"]
