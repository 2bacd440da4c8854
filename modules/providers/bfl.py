"""Black Forest Labs' API (FLUX.1 Pro, Pro Ultra, Kontext Pro): submit, poll the returned URL, download.

``POST {endpoint}/v1/{model}`` with the key in the ``x-key`` header answers ``{"id", "polling_url"}`` (and,
where the API reports it, ``cost``); ``GET polling_url`` answers ``{"status": "Pending" | "Ready" |
"Request Moderated" | "Content Moderated" | "Error" | "Task not found", "result": {"sample": <signed URL>},
"progress"}``; the sample is downloaded from its signed URL (no key). Endpoints: ``https://api.bfl.ai``
(global), ``https://api.eu.bfl.ai``, ``https://api.us.bfl.ai``. The key never appears in a message.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlsplit

ENDPOINTS = {"global": "https://api.bfl.ai", "eu": "https://api.eu.bfl.ai", "us": "https://api.us.bfl.ai"}
MODELS = ("flux-pro-1.1", "flux-pro-1.1-ultra", "flux-kontext-pro", "flux-pro")
MODERATED = ("Request Moderated", "Content Moderated")


class ProviderError(RuntimeError):
    """The provider refused or failed (or cannot be reached); the message is for the user."""


@dataclass
class Generated:
    image: bytes
    request_id: str
    cost: float | None
    seconds: float


def _scrub(text: str, key: str) -> str:
    return text.replace(key, "***") if key else text


def generate(endpoint: str, key: str, model: str, body: dict[str, Any], *, poll_every: float = 1.0,
             timeout: float = 300.0, should_stop: Callable[[], bool] | None = None,
             on_progress: Callable[[float | None, str], None] | None = None) -> Generated | None:
    """One image from ``model``; None when stopped (the provider's job is left to finish on its side)."""
    import httpx

    if not key:
        raise ProviderError("no Black Forest Labs API key: set BFL_API_KEY in the studio's environment")
    where = urlsplit(endpoint).netloc
    started = time.monotonic()
    headers = {"x-key": key, "accept": "application/json"}
    try:
        with httpx.Client(timeout=30.0, follow_redirects=True) as client:
            submitted = client.post(f"{endpoint.rstrip('/')}/v1/{model}", json=body, headers=headers)
            if submitted.status_code in (401, 403):
                raise ProviderError(f"{where} refused the API key ({submitted.status_code}): check BFL_API_KEY")
            if submitted.status_code == 402:
                raise ProviderError(f"{where}: not enough credits for {model} (402)")
            if submitted.status_code == 422:
                raise ProviderError(f"{where} refused the request: {_detail(submitted)}")
            if submitted.status_code == 429:
                raise ProviderError(f"{where}: too many requests at once (429); try again shortly")
            if submitted.status_code >= 400:
                raise ProviderError(f"{where} answered {submitted.status_code}: {_detail(submitted)}")
            task = submitted.json()
            request_id, polling_url = str(task.get("id", "")), task.get("polling_url")
            if not polling_url:
                polling_url = f"{endpoint.rstrip('/')}/v1/get_result?id={request_id}"
            cost = task.get("cost")
            while True:
                if should_stop is not None and should_stop():
                    return None
                if time.monotonic() - started > timeout:
                    raise ProviderError(f"{where} did not finish {model} within {timeout:.0f} s (request {request_id})")
                polled = client.get(polling_url, headers=headers)
                if polled.status_code >= 500:
                    time.sleep(poll_every)
                    continue
                if polled.status_code >= 400:
                    raise ProviderError(f"{where} answered {polled.status_code} while polling: {_detail(polled)}")
                state = polled.json()
                status = str(state.get("status", ""))
                if on_progress is not None:
                    progress = state.get("progress")
                    on_progress(float(progress) if isinstance(progress, (int, float)) else None, status)
                if status == "Ready":
                    sample = (state.get("result") or {}).get("sample")
                    if not sample:
                        raise ProviderError(f"{where} said Ready but gave no image (request {request_id})")
                    image = client.get(sample)
                    if image.status_code != 200:
                        raise ProviderError(f"downloading the image from {urlsplit(sample).netloc} failed "
                                            f"({image.status_code}); signed URLs expire after a few minutes")
                    return Generated(image.content, request_id, float(cost) if isinstance(cost, (int, float)) else
                                     None, time.monotonic() - started)
                if status in MODERATED:
                    raise ProviderError(f"{where} refused to make this image ({status}): the prompt or the result "
                                        "was moderated; change the prompt")
                if status in ("Error", "Task not found", "Failed"):
                    raise ProviderError(f"{where}: {status} for request {request_id}")
                time.sleep(poll_every)
    except httpx.HTTPError as exc:
        raise ProviderError(_scrub(f"cannot reach {where} ({type(exc).__name__}): offline, or the service is down",
                                   key)) from None


def _detail(response: Any) -> str:
    try:
        body = response.json()
        detail = body.get("detail") if isinstance(body, dict) else body
        return str(detail)[:300]
    except ValueError:
        return response.text[:300]
