"""The studio's OpenAI-compatible API (GET /v1/models, POST /v1/chat/completions), served by a real uvicorn
in the test and called with the studio's own OpenAI-compatible client: auth, the shapes model and a tiny local
VLM, streaming with usage, response_format validation (nothing invalid passed on), refusals."""

from __future__ import annotations

import base64
import io
import threading
import time

import httpx
import pytest
from PIL import Image

from modules.understanding.backends.base import BackendError, Message, single_turn
from modules.understanding.backends.openai_compat import OpenAICompatBackend, RemoteConfig
from modules.world.render import render_scene
from modules.world.spec import Scene, Shape
from tests.helpers.tiny_vlms import build_tiny_vlm

pytestmark = pytest.mark.slow
KEY = "studio-key-123456"


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    import uvicorn

    from modules.app_context import create_app_context
    from modules.flags import parse_flags
    from modules.server import create_http_app

    data = tmp_path_factory.mktemp("studio")
    build_tiny_vlm("qwen2_5_vl", data / "models" / "VLM" / "tiny-qwen")
    ctx = create_app_context(parse_flags(["--api", "--api-key", KEY, "--data-dir", str(data),
                                          "--skip-load-model-at-start", "--use-cpu", "all"]))
    config = uvicorn.Config(create_http_app(ctx, with_ui=False), host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/v1", ctx
    server.should_exit = True
    thread.join(10)
    ctx.close()


def client(url: str, model: str, key: str | None = KEY) -> OpenAICompatBackend:
    return OpenAICompatBackend(RemoteConfig(base_url=url, model=model, api_key=key, timeout_s=120, max_retries=0))


def shape_image(shape: str = "hexagon", colour: str = "purple") -> Image.Image:
    return render_scene(Scene(background="white", shapes=(Shape(shape=shape, colour=colour, position="centre",
                                                                size="large"),)), size=64)


def test_models_listed_behind_auth(studio):
    url, _ = studio
    assert httpx.get(url + "/models").status_code == 401
    assert httpx.post(url + "/chat/completions", json={}).status_code == 401
    assert client(url, "x").list_models() == ["atelier-shapes", "atelier-ocr", "local:atelier-shapes-vlm",
                                              "local:tiny-qwen"]
    with pytest.raises(BackendError, match="refused the API key"):
        client(url, "atelier-shapes", key="wrong-key-000").list_models()


def test_shapes_model_answers_plain_and_streamed(studio):
    url, _ = studio
    backend = client(url, "atelier-shapes")
    answer = backend.chat(single_turn("What shape is this?"), [shape_image()])
    assert answer.text == "hexagon"
    pieces: list[str] = []
    streamed = backend.chat(single_turn("What colour is the shape?"), [shape_image()], on_text=pieces.append)
    assert streamed.text == "purple" and "".join(pieces) == "purple"
    # multi-turn: the question is about the image shown in its own turn
    conversation = [Message("user", "What shape is this?", (0,)), Message("assistant", "hexagon"),
                    Message("user", "And this one?", (1,))]
    assert backend.chat(conversation, [shape_image(), shape_image("heart", "red")]).text == "heart"


def test_local_vlm_streams_with_usage(studio):
    url, _ = studio
    backend = client(url, "local:tiny-qwen")
    pieces: list[str] = []
    answer = backend.chat(single_turn("describe this image"), [shape_image()], max_tokens=5, on_text=pieces.append)
    assert answer.usage.completion_tokens >= 1 and answer.usage.prompt_tokens > 5
    assert "".join(pieces) == answer.text
    plain = backend.chat(single_turn("describe this image"), [shape_image()], max_tokens=5)
    assert plain.text.strip() == answer.text.strip() and plain.usage.completion_tokens == answer.usage.completion_tokens


def test_invalid_structured_answer_is_never_passed_on(studio):
    url, ctx = studio
    schema = {"type": "object", "required": ["shape"], "properties": {"shape": {"type": "string"}}}
    response_format = {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}
    with pytest.raises(BackendError, match="did not answer with JSON valid"):
        client(url, "local:tiny-qwen").chat(single_turn("shape?"), [shape_image()], max_tokens=4,
                                           response_format=response_format)
    pieces: list[str] = []
    with pytest.raises(BackendError, match="failed mid-answer: .*did not answer with JSON valid"):
        client(url, "local:tiny-qwen").chat(single_turn("shape?"), [shape_image()], max_tokens=4,
                                           response_format=response_format, on_text=pieces.append)
    assert pieces == []  # nothing of an invalid structured answer reaches a streaming client
    with pytest.raises(BackendError, match="answers in plain text"):
        client(url, "atelier-shapes").chat(single_turn("shape?"), [shape_image()], response_format=response_format)


def test_refusals(studio):
    url, _ = studio
    headers = {"Authorization": f"Bearer {KEY}"}
    image = base64.b64encode(_png()).decode()
    base = {"model": "atelier-shapes", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What shape is this?"},  # the shapes VLM knows its trained phrasings, not "shape?"
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + image}}]}]}
    ok = httpx.post(url + "/chat/completions", json=base, headers=headers, timeout=60)
    assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"] == "square"
    for change, status, text in (({"model": "gpt-4o"}, 400, "unknown model"), ({"top_p": 0.5}, 422, "top_p"),
                                 ({"n": 2}, 422, "n"), ({"stream_options": {"include_usage": True}}, 400, "stream")):
        answer = httpx.post(url + "/chat/completions", json={**base, **change}, headers=headers, timeout=60)
        assert answer.status_code == status and text in answer.text, (change, answer.text)
    remote_image = {"model": "atelier-shapes", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://example.com/x.png"}}]}]}
    answer = httpx.post(url + "/chat/completions", json=remote_image, headers=headers, timeout=60)
    assert answer.status_code == 400 and "data URIs" in answer.text


def _png() -> bytes:
    buffer = io.BytesIO()
    shape_image("square", "blue").save(buffer, format="PNG")
    return buffer.getvalue()
