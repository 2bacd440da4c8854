"""The ``understand_ask`` job kind: visual question answering over one or more images.

The offline default is the shapes VLM (``models/VLM/atelier-shapes-vlm``, through the local VLM path), which
answers questions about the shapes world (shape, colour, size, position, background, count, yes/no, describe);
without it, the shapes classifier's labels answer the same questions. A VLM backend answers anything."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from modules.jobs.kinds import JobKind
from modules.understanding.backends.base import Message
from modules.understanding.backends.shapes_vlm import default_backend, default_ready
from modules.understanding.interrogate import InterrogatorMissing
from modules.understanding.tasks.common import (MAX_IMAGES, USER_ERRORS, BackendRun, UnderstandingRequestError,
                                                backend_field, chosen_backend, decode_images, max_tokens_field,
                                                note_evictions, run_backend, services, temperature_field)

if TYPE_CHECKING:
    from modules.app_context import AppContext
    from modules.jobs.model import Job
    from modules.jobs.progress import JobControl

SHORT_ANSWER = "Answer the question using a single word or number."


class AskRequest(BaseModel):
    """Ask a question about one or more images (shown to the model in this order)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["understand_ask"] = "understand_ask"
    images: list[str] = Field(..., min_length=1, max_length=MAX_IMAGES, description="base64 images (or data URIs)")
    question: str = Field(..., min_length=1, max_length=8000)
    short_answer: bool = Field(False, description="ask for a single word or number (VLM backends; the offline "
                                                  "default always answers that way)")
    backend: str | None = backend_field()
    max_tokens: int = max_tokens_field(256)
    temperature: float = temperature_field()


@dataclass
class AskResult:
    answer: str
    run: BackendRun = field(default_factory=BackendRun)


def _precheck(ctx: "AppContext", request: AskRequest) -> None:
    decode_images(request.images, "images")
    name = chosen_backend(ctx, request.backend, request.kind)
    if name == "default" and not default_ready(ctx):
        ctx.interrogator.missing()
    if name == "ocr":
        raise UnderstandingRequestError("ocr only reads text; to ask about an image choose the default or a VLM "
                                        "backend")


def _run(ctx: "AppContext", job: "Job", control: "JobControl") -> AskResult:
    request: AskRequest = job.request
    images = decode_images(request.images, "images")
    name = chosen_backend(ctx, request.backend, request.kind)
    run = BackendRun(backend=name)
    control.begin(1, 1, text="answering")
    question = request.question.strip()
    if name == "default":
        backend, run.backend = default_backend(ctx)  # the shapes VLM (else the shapes classifier)
        if request.max_tokens != 256 or request.temperature != 0.0:
            run.notes.append("max_tokens and temperature do not apply to the offline default")
    else:
        backend = services(ctx).open(name)
        if request.short_answer:
            question += "\n" + SHORT_ANSWER
    answer = run_backend(ctx, job, control, backend, [Message("user", question, tuple(range(len(images))))], images,
                         max_tokens=request.max_tokens, temperature=request.temperature)
    note_evictions(run, backend)
    run.add(answer)
    control.step(1)
    return AskResult(answer=answer.text.strip(), run=run)


def _describe(result: Any) -> dict[str, Any] | None:
    if not isinstance(result, AskResult):
        return None
    return {"answer": result.answer, **result.run.as_dict()}


ASK = JobKind(name="understand_ask", request=AskRequest, run=_run, precheck=_precheck, describe=_describe,
              summary="Visual question answering: a question about one or more images, answered by the offline "
                      "default (shapes world) or a VLM backend.",
              user_errors=(*USER_ERRORS, InterrogatorMissing))
