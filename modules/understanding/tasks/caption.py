"""The ``understand_caption`` job kind: a caption at three detail levels (short, detailed, tags).

Tags come in the booru/kohya style with the formatting options of :mod:`.tags`. The offline default is the
shapes-world classifier; a VLM backend (remote or local) is asked with the level's prompt (or the
request's own ``prompt``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from modules.jobs.kinds import JobKind
from modules.understanding.backends.base import single_turn
from modules.understanding.interrogate import InterrogatorMissing, caption_from_labels
from modules.understanding.tasks.common import (USER_ERRORS, BackendRun, UnderstandingRequestError, backend_field,
                                                chosen_backend, decode_images, max_tokens_field, note_evictions,
                                                run_backend, services, temperature_field)
from modules.understanding.tasks.tags import format_tags, split_tags

if TYPE_CHECKING:
    from PIL import Image

    from modules.app_context import AppContext
    from modules.jobs.model import Job
    from modules.jobs.progress import JobControl

Detail = Literal["short", "detailed", "tags"]

PROMPTS: dict[str, str] = {
    "short": "Describe this image in one short sentence.",
    "detailed": "Describe this image in detail in a few sentences: the subjects, their colours, sizes and positions, "
                "and the background.",
    "tags": "List tags for this image in the style of booru tags: lowercase, comma-separated, most important first. "
            "Answer with the tags only.",
}


class CaptionOptions(BaseModel):
    """What a caption is asked with (one image or a folder): backend, prompt, tag formatting, sampling."""

    model_config = ConfigDict(extra="forbid")
    backend: str | None = backend_field()
    prompt: str | None = Field(None, max_length=4000, description="your own instruction (VLM backends only)")
    underscores: bool = Field(False, description="tags: underscores between words instead of spaces")
    escape_brackets: bool = Field(True, description="tags: escape ( ) [ ] for A1111 prompts")
    blacklist: list[str] = Field(default_factory=list, max_length=500,
                                 description="tags: tags to leave out (case-insensitive, * wildcards)")
    max_tags: int = Field(50, ge=1, le=500, description="tags: at most this many")
    max_tokens: int = max_tokens_field(300)
    temperature: float = temperature_field()


class CaptionRequest(CaptionOptions):
    """Caption one image. The tag options apply to ``detail="tags"`` only."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["understand_caption"] = "understand_caption"
    image: str = Field(..., description="base64 image (or data URI)")
    detail: Detail = Field("detailed", description="short (one sentence), detailed, or tags")


@dataclass
class CaptionResult:
    caption: str
    detail: str
    tags: list[str] | None = None
    run: BackendRun = field(default_factory=BackendRun)


def _precheck(ctx: "AppContext", request: CaptionRequest) -> None:
    decode_images([request.image])
    check_caption_options(ctx, request)


def check_caption_options(ctx: "AppContext", request: Any) -> None:
    """What a caption request (one image or a folder) may ask of its backend: tag options with tags only, a
    prompt only for a VLM, no captions from OCR."""
    backend = chosen_backend(ctx, request.backend, request.kind)
    if request.detail != "tags":
        changed = [name for name, default in (("underscores", False), ("escape_brackets", True), ("blacklist", []),
                                             ("max_tags", 50)) if getattr(request, name) != default]
        if changed:
            raise UnderstandingRequestError(f"{', '.join(changed)} apply to detail=tags only")
    if backend == "default":
        if request.prompt:
            raise UnderstandingRequestError("the offline default captions without a prompt; choose a VLM backend "
                                            "(remote or local:<folder>) to give your own")
        if ctx.interrogator.find() is None:
            ctx.interrogator.missing()
    if backend == "ocr":
        raise UnderstandingRequestError("ocr reads text and does not caption; use the default or a VLM backend")


def _run(ctx: "AppContext", job: "Job", control: "JobControl") -> CaptionResult:
    request: CaptionRequest = job.request
    image = decode_images([request.image])[0]
    control.begin(1, 1, text=f"captioning ({request.detail})")
    result = caption_image(ctx, job, control, request, image)
    control.step(1)
    return result


def caption_image(ctx: "AppContext", job: "Job", control: "JobControl", options: Any, image: "Image.Image",
                  *, stream: bool = True) -> CaptionResult:
    """Caption one decoded image with ``options`` (a :class:`CaptionRequest`, or any request carrying its
    fields: ``detail``, ``backend``, ``prompt``, the tag options, ``max_tokens``, ``temperature``)."""
    from modules.understanding.backends.shapes import label_tags, short_caption

    name = chosen_backend(ctx, options.backend, getattr(options, "kind", None))
    run = BackendRun(backend=name)
    if name == "default":
        labels = ctx.interrogator.predict(image)
        run.backend = "default:atelier-shapes"
        if options.max_tokens != 300 or options.temperature != 0.0:
            run.notes.append("max_tokens and temperature do not apply to the offline default")
        raw_tags = label_tags(labels)
        text = short_caption(labels) if options.detail == "short" else caption_from_labels(labels)
    else:
        backend = services(ctx).open(name)
        answer = run_backend(ctx, job, control, backend, single_turn(options.prompt or PROMPTS[options.detail]),
                             [image], max_tokens=options.max_tokens, temperature=options.temperature,
                             stream=stream)
        note_evictions(run, backend)
        run.add(answer)
        text = answer.text.strip()
        raw_tags = split_tags(text)
    if options.detail == "tags":
        tags = format_tags(raw_tags, underscores=options.underscores, escape_brackets=options.escape_brackets,
                           blacklist=options.blacklist, max_tags=options.max_tags)
        return CaptionResult(caption=", ".join(tags), detail="tags", tags=tags, run=run)
    return CaptionResult(caption=text, detail=options.detail, run=run)


def _describe(result: Any) -> dict[str, Any] | None:
    if not isinstance(result, CaptionResult):
        return None
    return {"caption": result.caption, "detail": result.detail, "tags": result.tags, **result.run.as_dict()}


CAPTION = JobKind(name="understand_caption", request=CaptionRequest, run=_run, precheck=_precheck, describe=_describe,
                  summary="Caption an image: short, detailed, or booru-style tags (underscores or spaces, escaped "
                          "brackets, a blacklist), with the offline default or a VLM backend.",
                  user_errors=(*USER_ERRORS, InterrogatorMissing))
