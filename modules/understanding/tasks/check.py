"""The ``understand_check`` job kind: does an image match a text? A score in [0, 1] and an explanation:
what matches, what the text asks for that the image lacks (missing), what the image shows that the text
does not say (extra). ``from_infotext`` checks an image against its own generation prompt (its PNG infotext).

The offline default compares the shapes classifier's labels with the labels the text names (the shapes
world's vocabulary); a VLM backend is asked for the same fields as JSON, validated (one repair)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from modules.jobs.kinds import JobKind
from modules.understanding.backends.base import Message
from modules.understanding.backends.shapes_vlm import SHAPES_VLM, default_ready, installed_shapes_vlm
from modules.understanding.interrogate import InterrogatorMissing
from modules.understanding.tasks.common import (USER_ERRORS, BackendRun, UnderstandingImageError,
                                                UnderstandingRequestError, backend_field, chosen_backend,
                                                max_tokens_field, note_evictions, run_backend, services,
                                                temperature_field)
from modules.understanding.tasks.schema_check import parse_json_answer, validate

if TYPE_CHECKING:
    from PIL import Image

    from modules.app_context import AppContext
    from modules.jobs.model import Job
    from modules.jobs.progress import JobControl

CHECK_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "required": ["score", "matching", "missing", "extra", "explanation"],
    "properties": {
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        "matching": {"type": "array", "items": {"type": "string"}},
        "missing": {"type": "array", "items": {"type": "string"}},
        "extra": {"type": "array", "items": {"type": "string"}},
        "explanation": {"type": "string"},
    },
}


class CheckRequest(BaseModel):
    """Check an image against ``text``, or (``from_infotext``) against the prompt in its own infotext."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["understand_check"] = "understand_check"
    image: str = Field(..., description="base64 image (or data URI); a PNG keeps its infotext")
    text: str | None = Field(None, max_length=8000, description="what the image should show")
    from_infotext: bool = Field(False, description="use the prompt of the image's own infotext instead of text")
    backend: str | None = backend_field()
    max_tokens: int = max_tokens_field(512)
    temperature: float = temperature_field()


@dataclass
class CheckResult:
    score: float
    matching: list[str]
    missing: list[str]
    extra: list[str]
    explanation: str
    text: str
    run: BackendRun = field(default_factory=BackendRun)


def _image_and_text(request: CheckRequest) -> tuple["Image.Image", str]:
    from modules.images.codec import ImageDecodeError, decode_request_image
    from modules.images.infotext import parse_infotext

    try:
        image = decode_request_image(request.image, "image")
    except ImageDecodeError as exc:
        raise UnderstandingImageError(str(exc)) from None
    if request.from_infotext:
        if request.text:
            raise UnderstandingRequestError("give text or from_infotext, not both")
        infotext = image.info.get("parameters") if isinstance(image.info.get("parameters"), str) else None
        if not infotext:
            raise UnderstandingRequestError("the image has no infotext (a PNG saved with its generation parameters); "
                                            "give the text to check against instead")
        text = str(parse_infotext(infotext).get("Prompt") or "").strip()
        if not text:
            raise UnderstandingRequestError("the image's infotext has an empty prompt")
        return image.convert("RGB"), text
    if not request.text or not request.text.strip():
        raise UnderstandingRequestError("give the text to check the image against, or set from_infotext")
    return image.convert("RGB"), request.text.strip()


def _precheck(ctx: "AppContext", request: CheckRequest) -> None:
    _image_and_text(request)
    name = chosen_backend(ctx, request.backend, request.kind)
    if name == "default" and not default_ready(ctx):
        ctx.interrogator.missing()
    if name == "ocr":
        raise UnderstandingRequestError("ocr only reads text; check with the default or a VLM backend")


def compare_labels(shown: dict[str, str], text: str) -> CheckResult:
    """The offline comparison: the labels ``text`` names against the labels predicted for the image."""
    from modules.world.captions import parse_prompt_to_labels

    named = parse_prompt_to_labels(text)

    def say(key: str, value: str) -> str:
        return f"{value} background" if key == "background" else f"{value} ({key})"

    matching = [say(k, v) for k, v in named.items() if shown.get(k) == v]
    missing = [say(k, v) for k, v in named.items() if shown.get(k) != v]
    extra = [say(k, v) for k, v in shown.items() if k not in named or named[k] != v]
    if not named:
        return CheckResult(0.0, [], [], extra, "the text names nothing the offline default can see (shape, colour, "
                                                "size, position, background of the shapes world)", text)
    score = round(len(matching) / len(named), 3)
    parts = [f"{len(matching)} of {len(named)} things the text names are in the image"]
    if missing:
        parts.append("not shown: " + ", ".join(missing))
    return CheckResult(score, matching, missing, extra, "; ".join(parts), text)


def _run(ctx: "AppContext", job: "Job", control: "JobControl") -> CheckResult:
    import json

    request: CheckRequest = job.request
    image, text = _image_and_text(request)
    name = chosen_backend(ctx, request.backend, request.kind)
    control.begin(1, 1, text="checking")
    if name == "default":
        vlm = installed_shapes_vlm(ctx)  # the shapes VLM reads the labels (else the shapes classifier)
        result = compare_labels(vlm.labels(image) if vlm else ctx.interrogator.predict(image), text)
        result.run = BackendRun(backend=f"default:{SHAPES_VLM}" if vlm else "default:atelier-shapes")
        control.step(1)
        return result
    run = BackendRun(backend=name)
    backend = services(ctx).open(name)
    prompt = (f"Does this image match the text below? Compare them and answer with JSON valid against this schema: "
              f"{json.dumps(CHECK_SCHEMA)}. score: 1 when everything matches, 0 when nothing does; matching: what "
              f"the text says that the image shows; missing: what the text says that the image lacks; extra: what "
              f"the image shows that the text does not say.\nText: {text}")
    response_format = {"type": "json_schema", "json_schema": {"name": "consistency", "schema": CHECK_SCHEMA}}
    conversation = [Message("user", prompt, (0,))]
    errors: list[str] = []
    data: Any = None
    for attempt in range(2):
        answer = run_backend(ctx, job, control, backend, conversation, [image], max_tokens=request.max_tokens,
                             temperature=request.temperature, response_format=response_format, stream=False)
        run.add(answer)
        try:
            data = parse_json_answer(answer.text)
            errors = validate(data, CHECK_SCHEMA)
        except ValueError as exc:
            errors = [f"the answer is not JSON ({exc})"]
        if not errors:
            break
        conversation += [Message("assistant", answer.text),
                         Message("user", "That answer is not valid:\n- " + "\n- ".join(errors[:20]) +
                                 "\nAnswer again with the corrected JSON object only.")]
    note_evictions(run, backend)
    control.step(1)
    if errors:
        raise UnderstandingRequestError(f"{backend.name} did not answer with a valid consistency check (even after "
                                        f"one repair): {'; '.join(errors[:3])}. Raw answer: {answer.text[:500]}")
    return CheckResult(float(data["score"]), list(data["matching"]), list(data["missing"]), list(data["extra"]),
                       str(data["explanation"]), text, run)


def _describe(result: Any) -> dict[str, Any] | None:
    if not isinstance(result, CheckResult):
        return None
    return {"score": result.score, "matching": result.matching, "missing": result.missing, "extra": result.extra,
            "explanation": result.explanation, "text": result.text, **result.run.as_dict()}


CHECK = JobKind(name="understand_check", request=CheckRequest, run=_run, precheck=_precheck, describe=_describe,
                summary="Image/text consistency: a score with what matches, what is missing and what is extra; "
                        "against a text or the image's own infotext prompt.",
                user_errors=(*USER_ERRORS, InterrogatorMissing))
