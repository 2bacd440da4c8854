"""The native job API (/api/v1): submit, status, result read back from disk, cancel one job,
idempotent retries, server-sent events, per-owner visibility, limits."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image


SIZE = 64
KEY_A, KEY_B = "key-alice-0001", "key-bob-00002"
LONG = {"prompt": "a long job", "width": SIZE, "height": SIZE, "steps": 150, "n_iter": 30, "seed": 1}


@pytest.fixture(scope="module")
def server(studio_factory):
    return studio_factory(["--nowebui", "--api-key", KEY_A, "--api-key", KEY_B, "--max-queue-per-user", "3",
                           "--max-pixels", str(512 * 512), "--max-images", "40"], name="jobs-api", own_ckpt_dir=True)


@pytest.fixture()
def alice(server) -> httpx.Client:
    with server.client(headers={"Authorization": f"Bearer {KEY_A}"}) as http:
        yield http


@pytest.fixture()
def bob(server) -> httpx.Client:
    with server.client(headers={"X-API-Key": KEY_B}) as http:
        yield http


def _submit(http: httpx.Client, request: dict[str, Any], **headers: str) -> httpx.Response:
    return http.post("/api/v1/jobs", json={"kind": "txt2img", "request": request}, headers=headers)


def _wait(http: httpx.Client, job_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = http.get(f"/api/v1/jobs/{job_id}").json()
        if status["state"] in ("succeeded", "failed", "cancelled"):
            return status
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def _wait_running(http: httpx.Client, job_id: str) -> None:
    deadline = time.time() + 60
    while http.get(f"/api/v1/jobs/{job_id}").json()["step"] == 0:
        assert time.time() < deadline
        time.sleep(0.02)


def test_submit_status_and_result_from_disk(alice: httpx.Client, server) -> None:
    r = _submit(alice, {"prompt": "a red circle", "width": SIZE, "height": SIZE, "steps": 2, "seed": 42,
                        "batch_size": 2, "save_images": False})
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == {"id", "kind", "state", "position", "replayed"} and body["state"] in ("queued", "running")
    status = _wait(alice, body["id"])
    assert status["state"] == "succeeded" and status["progress"] == 1.0 and status["source"] == "api"
    assert status["created"] <= status["started"] <= status["finished"]
    result = alice.get(f"/api/v1/jobs/{body['id']}/result").json()
    assert [im["seed"] for im in result["images"]] == [42, 43]
    for entry in result["images"]:
        path = Path(entry["path"])  # saved although the request said save_images=false
        assert path.is_file() and path.parent.parent.name == "txt2img-images"
        image = Image.open(io.BytesIO(base64.b64decode(entry["image"])))
        assert image.size == (SIZE, SIZE) and image.info["parameters"] == entry["infotext"]
    assert result["info"]["width"] == SIZE and result["info"]["interrupted"] is False
    meta_only = alice.get(f"/api/v1/jobs/{body['id']}/result", params={"images": "false"}).json()
    assert meta_only["images"][0]["image"] is None and meta_only["images"][0]["missing"] is False
    preview = alice.get(f"/api/v1/jobs/{body['id']}/preview")
    if preview.status_code == 200:  # the last live preview of the job, as PNG
        assert preview.headers["content-type"] == "image/png"
        Image.open(io.BytesIO(preview.content)).load()
    else:
        assert preview.status_code == 404 and preview.json()["detail"] == "no preview yet"


def test_idempotency_key_returns_the_same_job(alice: httpx.Client) -> None:
    request = {"prompt": "once only", "width": SIZE, "height": SIZE, "steps": 2, "seed": 5}
    first = _submit(alice, request, **{"Idempotency-Key": "retry-me-1"})
    second = _submit(alice, request, **{"Idempotency-Key": "retry-me-1"})
    assert first.status_code == 201 and second.status_code == 200
    assert second.json()["id"] == first.json()["id"] and second.json()["replayed"] is True
    _wait(alice, first.json()["id"])
    third = _submit(alice, request, **{"Idempotency-Key": "retry-me-1"})
    assert third.json()["id"] == first.json()["id"]
    clash = _submit(alice, {**request, "seed": 6}, **{"Idempotency-Key": "retry-me-1"})
    assert clash.status_code == 409 and "different request" in clash.json()["detail"]
    listed = alice.get("/api/v1/jobs", params={"limit": 500}).json()["jobs"]
    assert [j["id"] for j in listed].count(first.json()["id"]) == 1


def test_cancel_only_that_job_and_state_filter(alice: httpx.Client) -> None:
    running = _submit(alice, LONG).json()["id"]
    waiting = _submit(alice, {**LONG, "n_iter": 1, "steps": 2}).json()["id"]
    kept = _submit(alice, {"prompt": "kept", "width": SIZE, "height": SIZE, "steps": 2}).json()["id"]
    _wait_running(alice, running)
    assert alice.get(f"/api/v1/jobs/{kept}").json()["position"] == 2
    queued = alice.get("/api/v1/jobs", params=[("state", "queued"), ("state", "running")]).json()["jobs"]
    assert {j["id"] for j in queued} == {running, waiting, kept}
    assert alice.get(f"/api/v1/jobs/{running}/result").status_code == 409
    assert alice.get(f"/api/v1/jobs/{waiting}/preview").json()["detail"] == "no preview yet"
    deadline = time.time() + 30
    while (preview := alice.get(f"/api/v1/jobs/{running}/preview")).status_code != 200:
        assert time.time() < deadline, preview.text
        time.sleep(0.05)
    assert Image.open(io.BytesIO(preview.content)).size == (SIZE, SIZE)
    current = alice.get("/sdapi/v1/progress").json()["current_image"]
    assert current and Image.open(io.BytesIO(base64.b64decode(current))).size == (SIZE, SIZE)
    r = alice.delete(f"/api/v1/jobs/{waiting}")
    assert r.json() == {"id": waiting, "state": "cancelled", "cancelled": True}
    assert alice.post(f"/api/v1/jobs/{running}/cancel").json()["cancelled"] is True
    assert _wait(alice, running)["state"] == "cancelled"
    assert _wait(alice, kept)["state"] == "succeeded"
    assert alice.get(f"/api/v1/jobs/{waiting}").json()["error"] == "cancelled before it started"
    assert alice.delete(f"/api/v1/jobs/{waiting}").json()["cancelled"] is False


def test_owners_see_and_control_only_their_jobs(alice: httpx.Client, bob: httpx.Client) -> None:
    mine = _submit(alice, LONG).json()["id"]
    _wait_running(alice, mine)
    assert bob.get(f"/api/v1/jobs/{mine}").status_code == 404
    assert bob.delete(f"/api/v1/jobs/{mine}").status_code == 404
    assert bob.post("/sdapi/v1/interrupt").json() == {}  # bob's interrupt does not touch alice's job
    assert all(j["id"] != mine for j in bob.get("/api/v1/jobs").json()["jobs"])
    time.sleep(0.2)
    assert alice.get(f"/api/v1/jobs/{mine}").json()["state"] == "running"
    assert alice.post("/sdapi/v1/interrupt").json() == {}
    assert _wait(alice, mine)["state"] == "succeeded"  # interrupted: keeps what it made (A1111 semantics)


def test_round_robin_between_owners(alice: httpx.Client, bob: httpx.Client, server) -> None:
    blocker = _submit(alice, LONG).json()["id"]
    _wait_running(alice, blocker)
    small = {"prompt": "x", "width": SIZE, "height": SIZE, "steps": 2}
    a_jobs = [_submit(alice, small).json()["id"] for _ in range(2)]
    b_job = _submit(bob, small).json()["id"]
    assert bob.get(f"/api/v1/jobs/{b_job}").json()["position"] == 1  # bob goes before alice's second job
    assert alice.get(f"/api/v1/jobs/{a_jobs[1]}").json()["position"] == 3
    a_jobs.append(_submit(alice, small).json()["id"])  # alice's third waiting job: her limit
    full = _submit(alice, small)
    assert full.status_code == 429 and "--max-queue-per-user" in full.json()["detail"]
    b_second = _submit(bob, small)
    assert b_second.status_code == 201  # bob still has room
    alice.delete(f"/api/v1/jobs/{blocker}")
    b_jobs = [b_job, b_second.json()["id"]]
    starts = {j: _wait(alice if j in a_jobs else bob, j)["started"] for j in [*a_jobs, *b_jobs]}
    # alice was just served (her blocker), so bob goes first; then they alternate
    assert starts[b_jobs[0]] < starts[a_jobs[0]] < starts[b_jobs[1]] < starts[a_jobs[1]] < starts[a_jobs[2]]


@pytest.mark.parametrize("request_body, status, fragment", [
    ({"width": 1024, "height": 1024, "steps": 2}, 413, "--max-pixels"),
    ({"width": 64, "height": 64, "steps": 2, "batch_size": 8, "n_iter": 6}, 413, "--max-images"),
    ({"width": 256, "height": 256, "steps": 2, "enable_hr": True, "hr_scale": 4}, 413, "hires fix"),
    ({"width": 64, "height": 64, "steps": 2, "sampler_name": "Nope"}, 400, "sampler"),
    ({"width": 64, "height": 64, "steps": 2, "checkpoint": "missing.safetensors"}, 404, "missing"),
    ({"width": 64, "height": 64, "steps": 2, "unknown_field": 1}, 422, "unknown_field"),
])
def test_refusals_are_clear(alice: httpx.Client, request_body: dict, status: int, fragment: str) -> None:
    r = _submit(alice, request_body)
    assert r.status_code == status, r.text
    assert fragment.lower() in r.json()["detail"].lower()


def test_bad_kind_and_unknown_job(alice: httpx.Client) -> None:
    r = alice.post("/api/v1/jobs", json={"kind": "dance", "request": {}})
    assert r.status_code == 422 and "kind" in r.json()["detail"]
    assert alice.get("/api/v1/jobs/nope").json() == {"error": "JobNotFound", "detail": "no job with id 'nope'",
                                                     "errors": "no job with id 'nope'"}


def _read_events(http: httpx.Client, url: str, out: list[dict], ready: threading.Event, stop_after: str,
                 job: dict[str, str] | None = None) -> None:
    """Collect events until ``stop_after`` (for ``job["id"]`` when given)."""
    with http.stream("GET", url, timeout=60) as response:
        ready.set()
        event = None
        for line in response.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                data = json.loads(line.split(":", 1)[1])
                out.append({"event": event, **data})
                if event == stop_after and (job is None or data.get("job_id") == job.get("id")):
                    return


def test_server_sent_events(alice: httpx.Client, server) -> None:
    everything: list[dict] = []
    ready, target = threading.Event(), {}
    reader = threading.Thread(target=_read_events,
                              args=(alice, "/api/v1/events", everything, ready, "finished", target))
    reader.start()
    ready.wait(10)
    time.sleep(0.2)
    job = _submit(alice, {"prompt": "events", "width": SIZE, "height": SIZE, "steps": 20, "seed": 3}).json()["id"]
    target["id"] = job
    one: list[dict] = []
    _read_events(alice, f"/api/v1/jobs/{job}/events", one, threading.Event(), "finished")
    reader.join(60)
    kinds = [e["event"] for e in one]
    assert kinds[0] == "state"
    assert kinds[-1] == "finished" or one[0]["state"] == "succeeded"  # (it may finish before we connect)
    mine = [e["event"] for e in everything if e.get("job_id") == job]
    assert mine[0] == "queued" and {"started", "progress", "finished"} <= set(mine)
    progress = [e for e in everything if e["event"] == "progress"]
    assert progress and all(0.0 <= e["progress"] <= 1.0 for e in progress)
    # a finished job's stream gives its final state at once and ends
    late: list[dict] = []
    _read_events(alice, f"/api/v1/jobs/{job}/events", late, threading.Event(), "state")
    assert late[0]["state"] == "succeeded"


def test_sdapi_jobs_are_recorded(alice: httpx.Client, server) -> None:
    r = alice.post("/sdapi/v1/txt2img", json={"prompt": "recorded", "width": SIZE, "height": SIZE, "steps": 2})
    assert r.status_code == 200
    latest = alice.get("/api/v1/jobs", params={"limit": 1}).json()["jobs"][0]
    assert latest["source"] == "sdapi" and latest["state"] == "succeeded"
    result = alice.get(f"/api/v1/jobs/{latest['id']}/result").json()
    assert result["images"][0]["path"] is None  # A1111 semantics: not saved unless save_images


def test_img2img_job(alice: httpx.Client) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (SIZE, SIZE), (40, 85, 225)).save(buffer, format="PNG")
    init = base64.b64encode(buffer.getvalue()).decode()
    r = alice.post("/api/v1/jobs", json={"kind": "img2img", "request": {
        "init_images": [init], "prompt": "a red circle", "steps": 4, "denoising_strength": 0.5, "seed": 9}})
    assert r.status_code == 201, r.text
    status = _wait(alice, r.json()["id"])
    assert status["state"] == "succeeded", status
    result = alice.get(f"/api/v1/jobs/{status['id']}/result").json()
    assert result["images"][0]["seed"] == 9 and Path(result["images"][0]["path"]).parent.parent.name == "img2img-images"
    empty = alice.post("/api/v1/jobs", json={"kind": "img2img", "request": {"prompt": "x"}})
    assert empty.status_code == 400 and "init_images" in empty.json()["detail"]
    bad = alice.post("/api/v1/jobs", json={"kind": "img2img", "request": {"init_images": ["bm9wZQ=="]}})
    assert bad.status_code == 400 and "init image 1" in bad.json()["detail"]
