"""What the understanding tasks share: the backend field, image decoding, the user-facing errors, and
running a backend inside a job (progress, streaming into the job's text stream, stop on interrupt)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from pydantic import Field

from modules.understanding.backends.base import Answer, BackendError, Message, Usage

if TYPE_CHECKING:
    from PIL import Image

    from modules.app_context import AppContext
    from modules.jobs.model import Job
    from modules.jobs.progress import JobControl
    from modules.understanding.backends.base import VisionBackend
    from modules.understanding.services import UnderstandingServices

MAX_IMAGES = 8


def backend_field() -> Any:
    return Field(None, description="default (the offline default), remote (the OpenAI-compatible service set in "
                                   "Settings), ocr, or local:<folder in models/VLM>; empty: Settings → "
                                   "understanding_backend")


def max_tokens_field(default: int = 256) -> Any:
    return Field(default, ge=1, le=8192, description="most tokens in the answer (VLM backends)")


def temperature_field() -> Any:
    return Field(0.0, ge=0.0, le=2.0, description="sampling temperature (VLM backends; 0: greedy)")


class UnderstandingImageError(ValueError):
    """An image of the request cannot be decoded."""


class UnderstandingRequestError(ValueError):
    """A request that cannot run as asked (the message says why)."""


class AnswerStopped(RuntimeError):
    """The user interrupted or cancelled the job while the answer was being generated."""


#: the errors every understanding kind reports to the user as they are
USER_ERRORS: tuple[type[Exception], ...] = (UnderstandingImageError, UnderstandingRequestError, BackendError,
                                            AnswerStopped)


@dataclass
class BackendRun:
    """What a task reports beside its answer: the backend, the token usage, notes (evictions, repairs)."""

    backend: str = "default"
    usage: Usage = field(default_factory=Usage)
    notes: list[str] = field(default_factory=list)

    def add(self, answer: Answer) -> None:
        self.usage = Usage(self.usage.prompt_tokens + answer.usage.prompt_tokens,
                           self.usage.completion_tokens + answer.usage.completion_tokens)

    def as_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "usage": self.usage.as_dict(), "notes": list(self.notes)}


def decode_images(data: Sequence[str], field_name: str = "image") -> list["Image.Image"]:
    from modules.images.codec import ImageDecodeError, decode_request_image

    images = []
    for index, item in enumerate(data):
        what = field_name if len(data) == 1 else f"{field_name}[{index}]"
        try:
            images.append(decode_request_image(item, what).convert("RGB"))
        except ImageDecodeError as exc:
            raise UnderstandingImageError(str(exc)) from None
    return images


def services(ctx: "AppContext") -> "UnderstandingServices":
    found = getattr(ctx, "understanding", None)
    if found is None:
        raise UnderstandingRequestError("image understanding is not set up in this studio")
    return found


#: a request kind -> its task's name in Settings (``understanding_backend_<task>``)
TASK_OF_KIND = {"understand_caption": "caption", "understand_ask": "ask", "understand_extract": "extract",
                "understand_check": "check", "understand_chat": "chat", "understand_batch_caption": "batch"}


def chosen_backend(ctx: "AppContext", name: str | None, kind: str | None = None) -> str:
    """The request's backend name, checked; a request naming none gets the Settings default of its task (the
    request ``kind``'s), else Settings → ``understanding_backend``."""
    svc = services(ctx)
    return svc.check_name(name or svc.default_backend_name(TASK_OF_KIND.get(kind or "")))


def run_backend(ctx: "AppContext", job: "Job", control: "JobControl", backend: "VisionBackend",
                messages: Sequence[Message], images: Sequence["Image.Image"], *, max_tokens: int,
                temperature: float, response_format: Mapping[str, Any] | None = None,
                stream: bool = True) -> Answer:
    """Ask ``backend`` within a job: with ``stream`` the answer's pieces go to the job's text stream (for a
    streaming reader; the kind that has one marks it finished); a stop request ends the generation at the
    next piece."""
    streams = services(ctx).streams

    def on_text(piece: str) -> None:
        if control.should_stop:
            raise AnswerStopped("stopped by the user while answering")
        streams.append(job.id, piece)

    if control.should_stop:
        raise AnswerStopped("stopped by the user before answering")
    return backend.chat(messages, images, max_tokens=max_tokens, temperature=temperature,
                        response_format=response_format, on_text=on_text if stream else None)


def note_evictions(run: BackendRun, backend: "VisionBackend") -> None:
    evicted = getattr(backend, "evicted", None)
    if evicted:
        run.notes.append(f"loading {backend.name} unloaded {', '.join(evicted)} to stay within the model memory "
                         f"budget")
