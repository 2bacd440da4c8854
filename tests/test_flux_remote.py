"""FLUX.1 Pro through Black Forest Labs' API (issue 30.5), against a local server of the documented shape:
submit then poll (Pending, then Ready), the image saved with its infotext and cost, moderation refused with
a clear message, fields the provider cannot honour refused by name, no key or --offline refused."""

from __future__ import annotations

import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest
from PIL import Image

from modules.generation.requests import Txt2ImgRequest
from modules.providers.bfl_job import RemoteFluxRequest

KEY = "bfl-secret-key"


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 96), (10, 200, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


class _Fake(BaseHTTPRequestHandler):
    polls: dict[str, int] = {}
    bodies: list[dict] = []

    def log_message(self, *args: object) -> None:
        pass

    def _json(self, code: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802
        if self.headers.get("x-key") != KEY:
            self._json(403, {"detail": "Not authenticated"})
            return
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).bodies.append(body)
        task = "moderated" if "forbidden" in body["prompt"] else f"t{len(type(self).bodies)}"
        port = self.server.server_port
        self._json(200, {"id": task, "polling_url": f"http://127.0.0.1:{port}/v1/get_result?id={task}", "cost": 4})

    def do_GET(self) -> None:  # noqa: N802
        if self.path.startswith("/v1/get_result"):
            task = self.path.split("id=")[1]
            if task == "moderated":
                self._json(200, {"id": task, "status": "Content Moderated"})
                return
            seen = type(self).polls[task] = type(self).polls.get(task, 0) + 1
            if seen < 3:
                self._json(200, {"id": task, "status": "Pending", "progress": seen / 3})
                return
            self._json(200, {"id": task, "status": "Ready",
                             "result": {"sample": f"http://127.0.0.1:{self.server.server_port}/sample/{task}.png"}})
            return
        data = _png()
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture()
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    _Fake.polls, _Fake.bodies = {}, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Fake)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("BFL_API_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("BFL_API_KEY", KEY)
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


def test_remote_flux_job_end_to_end(studio_factory, fake: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from modules.jobs.model import JobState
    from modules.jobs.submit import submit_job

    ctx = studio_factory(("--nowebui",), load=False).ctx
    job = submit_job(ctx, RemoteFluxRequest(request=Txt2ImgRequest(prompt="a green field", width=768, height=512,
                                                                   seed=7, n_iter=2)), owner="t", source="test")
    ctx.queue.wait(job.id, 60)
    assert job.state is JobState.SUCCEEDED, job.error
    assert job.lane == "remote" and len(job.result.images) == 2 and all(p.is_file() for p in job.result.paths)
    text = job.result.infotexts[0]
    assert "Seed: 7" in text and "Model: flux-pro-1.1" in text and "Provider: Black Forest Labs" in text
    assert "Provider cost: 4" in text and KEY not in text
    assert [b["seed"] for b in _Fake.bodies] == [7, 8] and _Fake.bodies[0]["width"] == 768

    moderated = submit_job(ctx, RemoteFluxRequest(request=Txt2ImgRequest(prompt="something forbidden")),
                           owner="t", source="test")
    ctx.queue.wait(moderated.id, 60)
    assert moderated.state is JobState.FAILED and "moderated" in moderated.error and KEY not in moderated.error

    with pytest.raises(Exception, match="cannot honour: negative_prompt, sampler_name"):
        submit_job(ctx, RemoteFluxRequest(request=Txt2ImgRequest(prompt="x", negative_prompt="ugly",
                                                                 sampler_name="Euler")), owner="t", source="test")
    with pytest.raises(Exception, match="multiples of 32"):
        submit_job(ctx, RemoteFluxRequest(request=Txt2ImgRequest(prompt="x", width=500)), owner="t", source="test")
    ultra = RemoteFluxRequest(model="flux-pro-1.1-ultra", request=Txt2ImgRequest(prompt="x", width=1536, height=1024))
    from modules.providers.bfl_job import _body

    assert _body(ultra, "x", 1)["aspect_ratio"] == "3:2"
    monkeypatch.delenv("BFL_API_KEY")
    with pytest.raises(Exception, match="BFL_API_KEY"):
        submit_job(ctx, RemoteFluxRequest(request=Txt2ImgRequest(prompt="x")), owner="t", source="test")


def test_wrong_key_and_unreachable_are_clear(fake: str) -> None:
    from modules.providers.bfl import ProviderError, generate

    with pytest.raises(ProviderError, match="refused the API key"):
        generate(fake, "wrong", "flux-pro-1.1", {"prompt": "x"})
    with pytest.raises(ProviderError, match="cannot reach.*offline"):
        generate("http://127.0.0.1:9", KEY, "flux-pro-1.1", {"prompt": "x"})
