"""The OpenAI-compatible client against a small local server: answers, images as data URIs, streaming,
timeouts, retries honouring Retry-After, 500s, invalid JSON, a stream cut mid-way, the key kept secret."""

from __future__ import annotations

import socket

import pytest
from PIL import Image

from modules.understanding.backends.base import BackendError, BackendUnavailable, single_turn
from modules.understanding.backends.openai_compat import (OpenAICompatBackend, RemoteConfig, retry_after_seconds,
                                                          shown_url)
from tests.helpers.fake_openai import FakeOpenAI

KEY = "sk-test-SECRET-123456"


@pytest.fixture(scope="module")
def server():
    with FakeOpenAI(answer="a large red circle on a blue background", slow_s=1.5) as fake:
        yield fake


def backend(url: str, sleeps: list[float] | None = None, **kw) -> OpenAICompatBackend:
    sleeps = sleeps if sleeps is not None else []
    config = RemoteConfig(base_url=url, model="fake-vlm", api_key=KEY, **{"timeout_s": 5.0, "backoff_s": 0.5, **kw})
    return OpenAICompatBackend(config, sleep=sleeps.append)


def red() -> Image.Image:
    return Image.new("RGB", (16, 16), (255, 0, 0))


def test_answer_usage_images_and_key_header(server):
    answer = backend(server.url("ok")).chat(single_turn("Describe."), [red()], max_tokens=40)
    assert answer.text == "a large red circle on a blue background"
    assert answer.usage.prompt_tokens == 17 and answer.usage.completion_tokens == 4
    sent = [r for r in server.requests if r["path"] == "/ok/v1/chat/completions"][-1]
    assert sent["headers"]["Authorization"] == f"Bearer {KEY}"
    content = sent["body"]["messages"][0]["content"]
    assert content[0] == {"type": "text", "text": "Describe."}
    assert content[1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert sent["body"]["max_tokens"] == 40 and "stream" not in sent["body"]


def test_stream_into_callback(server):
    pieces: list[str] = []
    answer = backend(server.url("ok")).chat(single_turn("Describe."), [red()], on_text=pieces.append)
    assert len(pieces) == 8 and "".join(pieces) == answer.text == "a large red circle on a blue background"
    assert answer.usage.completion_tokens == 8  # the include_usage chunk


def test_stream_cut_midway_is_an_error_not_an_answer(server):
    pieces: list[str] = []
    with pytest.raises(BackendError, match="cut off"):
        backend(server.url("cut")).chat(single_turn("Describe."), [red()], on_text=pieces.append)
    assert "".join(pieces) == "a large"


def test_slow_service_times_out_after_retries(server):
    sleeps: list[float] = []
    with pytest.raises(BackendError, match="did not answer within 0.3 s"):
        backend(server.url("slow"), sleeps, timeout_s=0.3, max_retries=1).chat(single_turn("x", 0))
    assert sleeps == [0.5]


def test_429_honours_retry_after_then_answers(server):
    sleeps: list[float] = []
    answer = backend(server.url("ratelimit"), sleeps).chat(single_turn("x", 0))
    assert answer.text.startswith("a large") and sleeps == [1.0]


def test_500_retried_with_backoff_then_reported(server):
    sleeps: list[float] = []
    with pytest.raises(BackendError, match=r"failed \(500\) after 4 tries: upstream exploded"):
        backend(server.url("fail500"), sleeps, max_retries=3).chat(single_turn("x", 0))
    assert sleeps == [0.5, 1.0, 2.0]


def test_invalid_json_is_a_clear_error(server):
    with pytest.raises(BackendError, match="not JSON"):
        backend(server.url("badjson")).chat(single_turn("x", 0))


def test_key_never_in_messages(server):
    with pytest.raises(BackendError) as info:
        backend(server.url("echo")).chat(single_turn("x", 0))
    assert KEY not in str(info.value) and "***" in str(info.value)
    with pytest.raises(BackendError, match="refused the API key") as info:
        backend(server.url("unauth")).chat(single_turn("x", 0))
    assert KEY not in str(info.value)
    assert KEY not in repr(backend(server.url("ok")).config)


def test_unreachable_service_says_so():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sleeps: list[float] = []
    with pytest.raises(BackendUnavailable, match="cannot reach the service at http://127.0.0.1") as info:
        backend(f"http://user:{KEY}@127.0.0.1:{port}/v1", sleeps, max_retries=2).chat(single_turn("x", 0))
    assert KEY not in str(info.value) and sleeps == [0.5, 1.0]


def test_list_models_and_helpers(server):
    assert backend(server.url("ok")).list_models() == ["fake-vlm"]
    assert retry_after_seconds("3") == 3.0 and retry_after_seconds(None) is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)
    assert shown_url("https://u:p@host:8/v1?key=1") == "https://host:8/v1"
    with pytest.raises(BackendError, match="http"):
        OpenAICompatBackend(RemoteConfig(base_url="ftp://x", model="m"))
