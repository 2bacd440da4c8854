"""The studio's understanding models over an OpenAI-compatible API: ``GET /v1/models`` and
``POST /v1/chat/completions`` (text and data-URI image parts, ``stream`` as server-sent events with
``stream_options.include_usage``, ``response_format`` json_object / json_schema validated locally).

Each completion is an ``understand_chat`` job (:mod:`modules.understanding.tasks.chat`): it waits its turn on
the queue like every device job. The routes sit behind the same auth middleware as every API route
(``/v1/`` is an API prefix), so the ``openai`` client, other tools and scripts call them with an API key as
``Authorization: Bearer``. Fields an OpenAI client may send that the studio cannot honour are refused
(400), not ignored.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any, Iterator, Literal

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from modules.api.errors import ApiError, error_responses
from modules.api.security import principal_of

if TYPE_CHECKING:
    from modules.app_context import AppContext
    from modules.jobs.model import Job


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


class ChatCompletionsPayload(BaseModel):
    """OpenAI's chat-completions body, as far as the studio honours it."""

    model_config = ConfigDict(extra="forbid")
    model: str
    messages: list[dict[str, Any]] = Field(..., min_length=1)
    max_tokens: int | None = Field(None, ge=1, le=8192)
    max_completion_tokens: int | None = Field(None, ge=1, le=8192)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    stream: bool = False
    stream_options: StreamOptions | None = None
    response_format: dict[str, Any] | None = None
    n: Literal[1] | None = Field(None, description="only 1")


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "atelier"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def _chat_request(payload: ChatCompletionsPayload) -> Any:
    from pydantic import ValidationError

    from modules.understanding.tasks.chat import ChatRequest

    if payload.max_tokens is not None and payload.max_completion_tokens is not None:
        raise ApiError(400, "give max_tokens or max_completion_tokens, not both", "InvalidRequest")
    if payload.stream_options is not None and not payload.stream:
        raise ApiError(400, "stream_options apply only with stream: true", "InvalidRequest")
    fields: dict[str, Any] = {"model": payload.model, "messages": payload.messages}
    limit = payload.max_tokens or payload.max_completion_tokens
    if limit is not None:
        fields["max_tokens"] = limit
    if payload.temperature is not None:
        fields["temperature"] = payload.temperature
    if payload.response_format is not None:
        fields["response_format"] = payload.response_format
    try:
        return ChatRequest(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise ApiError(400, f"{where}: {first.get('msg')}", "InvalidRequest") from None


def _chunk(job_id: str, created: int, model: str, delta: dict[str, Any], finish: str | None = None) -> str:
    body = {"id": f"chatcmpl-{job_id}", "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return "data: " + json.dumps(body, ensure_ascii=False) + "\n\n"


def build_openai_router(ctx: "AppContext") -> APIRouter:
    from modules.api.sdapi_common import finished_result, raise_for_submit_error, sdapi_owner

    router = APIRouter(prefix="/v1", tags=["openai"])

    @router.get("/models", response_model=ModelList)
    def models() -> ModelList:
        from modules.understanding.tasks.chat import served_models

        created = int(ctx.started_at)
        return ModelList(data=[ModelCard(id=name, created=created) for name in served_models(ctx)])

    def submit(payload: ChatCompletionsPayload, principal: str | None) -> "Job":
        from modules.jobs.submit import submit_job

        request = _chat_request(payload)
        try:
            return submit_job(ctx, request, owner=sdapi_owner(principal), source="openai")
        except Exception as exc:  # noqa: BLE001 - mapped to 4xx or re-raised
            raise_for_submit_error(exc, ctx.kinds.of(request).user_errors)
            raise

    @router.post("/chat/completions", responses={
        200: {"description": "a chat completion, or with stream: true its chunks as server-sent events",
              "content": {"application/json": {}, "text/event-stream": {}}},
        **error_responses(400, 404, 409, 413, 422, 429, 500, 507)})
    def chat_completions(payload: ChatCompletionsPayload, principal: str | None = Depends(principal_of)) -> Any:
        job = submit(payload, principal)
        created = int(time.time())
        if payload.stream:
            include_usage = bool(payload.stream_options and payload.stream_options.include_usage)
            return StreamingResponse(_stream(job, created, payload.model, include_usage),
                                     media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        ctx.queue.wait(job.id)
        result = finished_result(job)
        return {"id": f"chatcmpl-{job.id}", "object": "chat.completion", "created": created, "model": result.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": result.text},
                             "finish_reason": result.finish_reason}],
                "usage": result.usage.as_dict()}

    def _stream(job: "Job", created: int, model: str, include_usage: bool) -> Iterator[str]:
        streams = ctx.understanding.streams if ctx.understanding is not None else None
        finished = False
        try:
            yield _chunk(job.id, created, model, {"role": "assistant", "content": ""})
            offset = 0
            while streams is not None:
                pieces, done = streams.read(job.id, offset, timeout=0.5)
                for piece in pieces:
                    yield _chunk(job.id, created, model, {"content": piece})
                offset += len(pieces)
                if done or (job.done.is_set() and not pieces):
                    break
            ctx.queue.wait(job.id)
            finished = True
            try:
                result = finished_result(job)
            except ApiError as exc:
                yield "data: " + json.dumps({"error": {"message": exc.message, "type": exc.kind,
                                                       "code": exc.status}}) + "\n\n"
                yield "data: [DONE]\n\n"
                return
            yield _chunk(job.id, created, model, {}, result.finish_reason)
            if include_usage:
                body = {"id": f"chatcmpl-{job.id}", "object": "chat.completion.chunk", "created": created,
                        "model": model, "choices": [], "usage": result.usage.as_dict()}
                yield "data: " + json.dumps(body) + "\n\n"
            yield "data: [DONE]\n\n"
        finally:
            if not finished and not job.done.is_set():  # the client went away: stop answering for nobody
                ctx.queue.cancel(job.id)
            if streams is not None:
                streams.discard(job.id)

    return router
