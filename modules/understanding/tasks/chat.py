"""The ``understand_chat`` job kind: an OpenAI-style chat over the studio's own understanding models, what
``POST /v1/chat/completions`` queues (and the native job API offers).

Messages carry text and ``image_url`` parts (data URIs only: the studio fetches nothing); earlier images stay
in context. ``response_format`` (``json_object`` or ``json_schema``) is validated locally, repaired once, and
an answer still invalid fails the job: nothing invalid is passed on as valid. Models: ``atelier-shapes``
(the offline default), ``atelier-ocr``, and ``local:<folder>`` for each model folder in ``models/VLM``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from modules.jobs.kinds import JobKind
from modules.understanding.backends.base import Message, Usage
from modules.understanding.backends.ocr import OCR_MODEL, OcrBackend
from modules.understanding.backends.shapes import SHAPES_MODEL
from modules.understanding.backends.shapes_vlm import default_backend, default_ready
from modules.understanding.interrogate import InterrogatorMissing
from modules.understanding.tasks.common import (MAX_IMAGES, USER_ERRORS, UnderstandingRequestError, decode_images,
                                                max_tokens_field, run_backend, services, temperature_field)
from modules.understanding.tasks.schema_check import SchemaError, check_schema, parse_json_answer, validate

if TYPE_CHECKING:
    from PIL import Image

    from modules.app_context import AppContext
    from modules.jobs.model import Job
    from modules.jobs.progress import JobControl
    from modules.understanding.backends.base import VisionBackend


class ImageUrl(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(..., description="data:image/...;base64,... (the studio fetches no URLs)")
    detail: Literal["auto", "low", "high"] = "auto"


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text"] = "text"
    text: str


class ImagePart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["image_url"] = "image_url"
    image_url: ImageUrl


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: Union[str, list[Union[TextPart, ImagePart]]]


class ChatRequest(BaseModel):
    """One chat completion with an understanding model of this studio."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["understand_chat"] = "understand_chat"
    model: str = Field(SHAPES_MODEL, description="an id from GET /v1/models")
    messages: list[ChatMessage] = Field(..., min_length=1, max_length=256)
    max_tokens: int = max_tokens_field(512)
    temperature: float = temperature_field()
    response_format: dict[str, Any] | None = Field(None, description='{"type": "text" | "json_object" | '
                                                                     '"json_schema", "json_schema": {...}}')


@dataclass
class ChatResult:
    text: str
    model: str
    usage: Usage = field(default_factory=Usage)
    finish_reason: str = "stop"
    notes: list[str] = field(default_factory=list)


def served_models(ctx: "AppContext") -> list[str]:
    """The model ids this studio serves for chat: the offline default (``atelier-shapes``: the shapes VLM, else
    the shapes classifier; when either is installed), OCR, and every local VLM folder."""
    ids = [SHAPES_MODEL] if default_ready(ctx) else []
    return ids + [OCR_MODEL, *services(ctx).local_models()]


def conversation(request: ChatRequest) -> tuple[list[Message], list["Image.Image"]]:
    """The request's messages as backend messages plus the images in order of appearance."""
    messages: list[Message] = []
    data: list[str] = []
    for message in request.messages:
        if isinstance(message.content, str):
            messages.append(Message(message.role, message.content))
            continue
        texts, shown = [], []
        for part in message.content:
            if isinstance(part, TextPart):
                texts.append(part.text)
            else:
                if not part.image_url.url.startswith("data:"):
                    raise UnderstandingRequestError("images must be data URIs (data:image/png;base64,...): the "
                                                    "studio does not fetch URLs")
                if message.role != "user":
                    raise UnderstandingRequestError("only user messages may carry images")
                shown.append(len(data))
                data.append(part.image_url.url)
        messages.append(Message(message.role, "\n".join(texts), tuple(shown)))
    if len(data) > MAX_IMAGES:
        raise UnderstandingRequestError(f"at most {MAX_IMAGES} images per conversation (got {len(data)})")
    if not any(m.role == "user" for m in messages):
        raise UnderstandingRequestError("the conversation needs a user message")
    return messages, decode_images(data, "messages image")


def _schema_of(response_format: dict[str, Any] | None) -> tuple[str, dict[str, Any] | None]:
    """(type, schema) of a response_format, checked."""
    if response_format is None:
        return "text", None
    kind = response_format.get("type")
    if kind == "text":
        return "text", None
    if kind == "json_object":
        return "json_object", {"type": "object"}
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise UnderstandingRequestError("response_format json_schema needs json_schema.schema (a JSON Schema)")
        try:
            check_schema(schema)
        except SchemaError as exc:
            raise UnderstandingRequestError(str(exc)) from None
        return "json_schema", schema
    raise UnderstandingRequestError(f"response_format type must be text, json_object or json_schema (got {kind!r})")


def _backend(ctx: "AppContext", model: str) -> "VisionBackend":
    if model == SHAPES_MODEL:
        return default_backend(ctx)[0]  # the shapes VLM (else the shapes classifier)
    if model == OCR_MODEL:
        return OcrBackend(services(ctx).ocr)
    if model.startswith("local:") and model in services(ctx).local_models():
        return services(ctx).local(model[6:])
    raise UnderstandingRequestError(f"unknown model {model!r}; this studio serves {', '.join(served_models(ctx))}")


def _precheck(ctx: "AppContext", request: ChatRequest) -> None:
    conversation(request)
    kind, _ = _schema_of(request.response_format)
    if request.model not in served_models(ctx):
        raise UnderstandingRequestError(f"unknown model {request.model!r}; this studio serves "
                                        f"{', '.join(served_models(ctx))}")
    if kind != "text" and request.model in (SHAPES_MODEL, OCR_MODEL):
        raise UnderstandingRequestError(f"{request.model} answers in plain text; structured output "
                                        f"(response_format {kind}) needs a local VLM")


def _run(ctx: "AppContext", job: "Job", control: "JobControl") -> ChatResult:
    request: ChatRequest = job.request
    streams = services(ctx).streams
    try:
        messages, images = conversation(request)
        kind, schema = _schema_of(request.response_format)
        backend = _backend(ctx, request.model)
        control.begin(1, 1, text="answering")
        answer = run_backend(ctx, job, control, backend, messages, images, max_tokens=request.max_tokens,
                             temperature=request.temperature, response_format=request.response_format,
                             stream=schema is None)
        usage, notes = answer.usage, []
        if schema is not None:
            answer, extra = _validated(ctx, job, control, backend, request, messages, images, answer, schema)
            usage = Usage(usage.prompt_tokens + extra.prompt_tokens, usage.completion_tokens + extra.completion_tokens)
            streams.append(job.id, answer.text)  # only a valid answer reaches a streaming reader
        evicted = getattr(backend, "evicted", None)
        if evicted:
            notes.append(f"loading {backend.name} unloaded {', '.join(evicted)}")
        control.step(1)
        return ChatResult(text=answer.text, model=request.model, usage=usage, finish_reason=answer.finish_reason,
                          notes=notes)
    finally:
        streams.finish(job.id)


def _validated(ctx: "AppContext", job: "Job", control: "JobControl", backend: "VisionBackend", request: ChatRequest,
               messages: list[Message], images: list["Image.Image"], answer: Any,
               schema: dict[str, Any]) -> tuple[Any, Usage]:
    from modules.understanding.backends.base import Answer

    def problems(text: str) -> tuple[str, list[str]]:
        try:
            data = parse_json_answer(text)
        except ValueError as exc:
            return text, [f"the answer is not JSON ({exc})"]
        return json.dumps(data, ensure_ascii=False), validate(data, schema)

    text, errors = problems(answer.text)
    extra = Usage()
    if errors:
        again = run_backend(ctx, job, control, backend,
                            [*messages, Message("assistant", answer.text),
                             Message("user", "That answer is not valid:\n- " + "\n- ".join(errors[:20]) +
                                     "\nAnswer again with the corrected JSON only.")],
                            images, max_tokens=request.max_tokens, temperature=request.temperature,
                            response_format=request.response_format, stream=False)
        extra = again.usage
        text, errors = problems(again.text)
        if errors:
            raise UnderstandingRequestError(f"{backend.name} did not answer with JSON valid against the "
                                            f"response_format (even after one repair): {'; '.join(errors[:3])}. "
                                            f"Raw answer: {again.text[:500]}")
    return Answer(text=text, usage=answer.usage, model=answer.model, finish_reason=answer.finish_reason), extra


def _describe(result: Any) -> dict[str, Any] | None:
    if not isinstance(result, ChatResult):
        return None
    return {"text": result.text, "model": result.model, "usage": result.usage.as_dict(),
            "finish_reason": result.finish_reason, "notes": result.notes}


CHAT = JobKind(name="understand_chat", request=ChatRequest, run=_run, precheck=_precheck, describe=_describe,
               summary="An OpenAI-style chat completion (text and data-URI images, earlier images kept in context) "
                       "with one of the studio's understanding models; what /v1/chat/completions runs.",
               user_errors=(*USER_ERRORS, InterrogatorMissing))
