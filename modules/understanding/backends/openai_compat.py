"""A client for any OpenAI-compatible chat-completions service (OpenRouter, Baidu AI Studio / Qianfan, vLLM,
Ollama, LM Studio, FastDeploy, or another Atelier), over httpx.

* Images go as ``image_url`` parts holding PNG data URIs, after the text part of their message.
* With ``on_text`` the answer is streamed (``stream: true``, server-sent events, comment lines skipped,
  ``stream_options.include_usage`` asked for) and each piece handed to the callback.
* 429 and 5xx answers and connection failures are retried with exponential backoff, honouring
  ``Retry-After`` (seconds or an HTTP date, capped); a stream is never retried once text was handed on.
* The API key is sent only in the ``Authorization`` header of requests to ``base_url`` and is scrubbed
  from every message this module raises or logs.
* Every failure is a :class:`~.base.BackendError` with a readable message: unreachable or offline
  (:class:`~.base.BackendUnavailable`), refused key, a timeout, an answer that is not JSON, a stream cut off.
"""

from __future__ import annotations

import base64
import email.utils
import io
import json
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence
from urllib.parse import urlsplit, urlunsplit

import httpx

from modules.understanding.backends.base import (Answer, BackendError, BackendUnavailable, Message, StreamCallback,
                                                 Usage)

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RemoteConfig:
    """Where and how to call the service. ``api_key`` is never shown (``repr`` hides it)."""

    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 120.0
    connect_timeout_s: float = 10.0
    max_retries: int = 3
    backoff_s: float = 1.0
    max_wait_s: float = 30.0
    extra_body: Mapping[str, Any] = field(default_factory=dict)


def image_data_uri(image: "Image.Image") -> str:
    """A PNG data URI of ``image`` (what every OpenAI-compatible service accepts)."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def openai_messages(messages: Sequence[Message], images: Sequence["Image.Image"]) -> list[dict[str, Any]]:
    """The chat-completions ``messages``: text first, then the message's images as data URIs."""
    out: list[dict[str, Any]] = []
    for message in messages:
        if not message.images:
            out.append({"role": message.role, "content": message.text})
            continue
        parts: list[dict[str, Any]] = [{"type": "text", "text": message.text}] if message.text else []
        for index in message.images:
            if not 0 <= index < len(images):
                raise BackendError(f"message refers to image {index + 1}, but the conversation has {len(images)}")
            parts.append({"type": "image_url", "image_url": {"url": image_data_uri(images[index])}})
        out.append({"role": message.role, "content": parts})
    return out


def shown_url(url: str) -> str:
    """``url`` without credentials or query string (what messages may name)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds (a number, or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class _CutOff(Exception):
    """A stream that ended before it said it was done."""


class OpenAICompatBackend:
    """:class:`~.base.VisionBackend` over an OpenAI-compatible ``/chat/completions``."""

    def __init__(self, config: RemoteConfig, *, transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not config.base_url.startswith(("http://", "https://")):
            raise BackendError(f"the service URL must start with http:// or https:// (got {shown_url(config.base_url)!r})")
        if not config.model:
            raise BackendError("no model is set for the OpenAI-compatible service")
        self._config = config
        self._transport = transport
        self._sleep = sleep

    @property
    def name(self) -> str:
        return f"remote:{self._config.model}"

    @property
    def config(self) -> RemoteConfig:
        return self._config

    # -- what may be shown ------------------------------------------------------------------
    def scrub(self, text: str) -> str:
        """``text`` with the API key (and any credentials in the URL) replaced."""
        key = self._config.api_key
        if key:
            text = text.replace(key, "***")
        parts = urlsplit(self._config.base_url)
        if parts.password:
            text = text.replace(parts.password, "***")
        return text

    def _where(self) -> str:
        return shown_url(self._config.base_url)

    # -- the calls ------------------------------------------------------------------------------
    def _client(self) -> httpx.Client:
        headers = {"Accept": "application/json"}
        if self._config.api_key:
            headers["Authorization"] = f"Bearer {self._config.api_key}"
        timeout = httpx.Timeout(self._config.timeout_s, connect=self._config.connect_timeout_s)
        return httpx.Client(base_url=self._config.base_url.rstrip("/") + "/", headers=headers, timeout=timeout,
                            transport=self._transport, follow_redirects=False)

    def list_models(self) -> list[str]:
        """The model ids the service offers (``GET /models``)."""
        with self._client() as client:
            response = self._send(client, "GET", "models", None, stream=False)
            try:
                data = self._json(response)
            finally:
                response.close()
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise BackendError(f"the service at {self._where()} answered GET /models without a list of models")
        return [str(item.get("id")) for item in items if isinstance(item, dict) and item.get("id")]

    def chat(self, messages: Sequence[Message], images: Sequence["Image.Image"] = (), *, max_tokens: int = 256,
             temperature: float = 0.0, response_format: Mapping[str, Any] | None = None,
             on_text: StreamCallback | None = None) -> Answer:
        body: dict[str, Any] = {"model": self._config.model, "messages": openai_messages(messages, images),
                                "max_tokens": int(max_tokens), "temperature": float(temperature)}
        if response_format:
            body["response_format"] = dict(response_format)
        body.update(self._config.extra_body)
        if on_text is not None:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        with self._client() as client:
            if on_text is None:
                response = self._send(client, "POST", "chat/completions", body, stream=False)
                try:
                    return self._answer(self._json(response))
                finally:
                    response.close()
            return self._stream(client, body, on_text)

    # -- plumbing ---------------------------------------------------------------------------------
    def _send(self, client: httpx.Client, method: str, path: str, body: dict[str, Any] | None, *,
              stream: bool) -> httpx.Response:
        """One request, retried on 429/5xx and connection failures; a non-2xx final answer raises."""
        attempts = max(0, self._config.max_retries) + 1
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                request = client.build_request(method, path, json=body)
                response = client.send(request, stream=stream)
            except httpx.TimeoutException:
                if last:
                    raise BackendError(f"the service at {self._where()} did not answer within "
                                       f"{self._config.timeout_s:g} s (tried {attempts} times)") from None
                self._wait(attempt, None)
                continue
            except httpx.TransportError as exc:
                if last:
                    raise BackendUnavailable(
                        f"cannot reach the service at {self._where()} ({self.scrub(type(exc).__name__)}): is it "
                        f"running, and is this computer online? Tried {attempts} times") from None
                self._wait(attempt, None)
                continue
            if response.status_code < 400:
                return response
            if response.status_code in RETRY_STATUSES and not last:
                wait = retry_after_seconds(response.headers.get("retry-after"))
                response.close()
                log.info("service %s answered %s; retrying", self._where(), response.status_code)
                self._wait(attempt, wait)
                continue
            raise self._http_error(response, attempts)
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait(self, attempt: int, retry_after: float | None) -> None:
        delay = retry_after if retry_after is not None else self._config.backoff_s * (2 ** attempt)
        self._sleep(min(delay, self._config.max_wait_s))

    def _http_error(self, response: httpx.Response, attempts: int) -> BackendError:
        try:
            response.read()
            detail = self._error_text(response.json())
        except (ValueError, httpx.HTTPError):
            detail = ""
        finally:
            response.close()
        status = response.status_code
        if status in (401, 403):
            return BackendError(f"the service at {self._where()} refused the API key ({status}): check the key "
                                f"set for it")
        if status == 429:
            text = f"the service at {self._where()} is rate-limiting (429) after {attempts} tries; try again later"
        elif status >= 500:
            text = f"the service at {self._where()} failed ({status}) after {attempts} tries"
        else:
            text = f"the service at {self._where()} refused the request ({status})"
        return BackendError(self.scrub(f"{text}: {detail[:300]}" if detail else text))

    @staticmethod
    def _error_text(data: Any) -> str:
        if isinstance(data, dict):
            error = data.get("error", data.get("detail", data.get("message")))
            if isinstance(error, dict):
                error = error.get("message", error)
            elif isinstance(data.get("detail"), str):  # FastAPI's and Atelier's own error bodies
                error = data["detail"]
            return str(error) if error is not None else ""
        return ""

    def _json(self, response: httpx.Response) -> Any:
        try:
            response.read()
            return response.json()
        except (ValueError, UnicodeDecodeError):
            raise BackendError(f"the service at {self._where()} answered with something that is not JSON "
                               f"(status {response.status_code})") from None
        except httpx.TimeoutException:
            raise BackendError(f"the service at {self._where()} stopped answering mid-way "
                               f"(no data for {self._config.timeout_s:g} s)") from None
        except httpx.TransportError:
            raise BackendError(f"the connection to {self._where()} broke mid-answer") from None

    def _answer(self, data: Any) -> Answer:
        if isinstance(data, dict) and data.get("error"):
            raise BackendError(self.scrub(f"the service at {self._where()} answered with an error: "
                                          f"{self._error_text(data)[:300]}"))
        try:
            choice = data["choices"][0]
            content = choice["message"].get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError):
            raise BackendError(f"the service at {self._where()} answered without a message "
                               f"(not an OpenAI-compatible chat completion)") from None
        if isinstance(content, list):  # some services answer with content parts
            content = "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        return Answer(text=str(content), usage=_usage(data.get("usage")), model=str(data.get("model") or self._config.model),
                      finish_reason=str(choice.get("finish_reason") or "stop"))

    def _stream(self, client: httpx.Client, body: dict[str, Any], on_text: StreamCallback) -> Answer:
        response = self._send(client, "POST", "chat/completions", body, stream=True)
        pieces: list[str] = []
        usage, model, finish = Usage(), self._config.model, ""
        try:
            if "json" in response.headers.get("content-type", "") and "stream" not in response.headers.get(
                    "content-type", ""):  # a service that ignores stream=true answers in one piece
                answer = self._answer(self._json(response))
                if answer.text:
                    on_text(answer.text)
                return answer
            done = False
            for data in self._events(response):
                if data == "[DONE]":
                    done = True
                    break
                try:
                    chunk = json.loads(data)
                except ValueError:
                    raise BackendError(f"the service at {self._where()} sent a stream event that is not JSON") from None
                if not isinstance(chunk, dict):
                    continue
                if chunk.get("error"):
                    raise BackendError(self.scrub(f"the service at {self._where()} failed mid-answer: "
                                                  f"{self._error_text(chunk)[:300]}"))
                if chunk.get("usage"):
                    usage = _usage(chunk["usage"])
                model = str(chunk.get("model") or model)
                for choice in chunk.get("choices") or ():
                    delta = (choice or {}).get("delta") or {}
                    text = delta.get("content")
                    if text:
                        pieces.append(str(text))
                        on_text(str(text))
                    if choice.get("finish_reason"):
                        finish = str(choice["finish_reason"])
            if not done and not finish:
                raise _CutOff()
        except _CutOff:
            got = "".join(pieces)
            raise BackendError(f"the stream from {self._where()} was cut off after {len(got)} characters "
                               f"(no end-of-answer mark); the partial answer is not used") from None
        except httpx.TimeoutException:
            raise BackendError(f"the service at {self._where()} stopped streaming (no data for "
                               f"{self._config.timeout_s:g} s)") from None
        except httpx.TransportError:
            raise BackendError(f"the stream from {self._where()} was cut off after {len(''.join(pieces))} "
                               f"characters (connection lost); the partial answer is not used") from None
        finally:
            response.close()
        return Answer(text="".join(pieces), usage=usage, model=model, finish_reason=finish or "stop")

    @staticmethod
    def _events(response: httpx.Response) -> Iterator[str]:
        """The ``data`` of each server-sent event (comment lines and other fields skipped)."""
        lines: list[str] = []
        for line in response.iter_lines():
            if not line:
                if lines:
                    yield "\n".join(lines)
                    lines = []
                continue
            if line.startswith(":"):
                continue
            if line.startswith("data:"):
                lines.append(line[5:].lstrip(" "))
        if lines:
            yield "\n".join(lines)


def _usage(raw: Any) -> Usage:
    if not isinstance(raw, dict):
        return Usage()
    try:
        return Usage(prompt_tokens=int(raw.get("prompt_tokens") or 0),
                     completion_tokens=int(raw.get("completion_tokens") or 0))
    except (TypeError, ValueError):
        return Usage()
