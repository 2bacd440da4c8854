"""The ``understand_extract`` job kind: a document, receipt, invoice or form turned into JSON against the
user's JSON Schema or a preset (:mod:`.presets`), validated locally (:mod:`.schema_check`).

A VLM backend is asked for JSON (``response_format`` json_schema, plus the schema in the prompt); an answer
that is not valid is repaired once by asking again with the validation errors; if it is still invalid the
result says so and carries the raw text, and ``data`` is empty: nothing invalid is passed on as valid.
The offline default reads the text with OCR and fills the fields by layout rules (:mod:`.extract_rules`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from modules.jobs.kinds import JobKind
from modules.understanding.backends.base import Message
from modules.understanding.tasks.common import (USER_ERRORS, BackendRun, UnderstandingRequestError, backend_field,
                                                chosen_backend, decode_images, max_tokens_field, note_evictions,
                                                run_backend, services, temperature_field)
from modules.understanding.tasks.presets import PRESETS
from modules.understanding.tasks.schema_check import SchemaError, check_schema, parse_json_answer, validate

if TYPE_CHECKING:
    from modules.app_context import AppContext
    from modules.jobs.model import Job
    from modules.jobs.progress import JobControl

Preset = Literal["receipt", "invoice", "form"]


class ExtractRequest(BaseModel):
    """Extract fields from a document image: give a ``preset`` or your own ``json_schema`` (one of the two)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["understand_extract"] = "understand_extract"
    image: str = Field(..., description="base64 image (or data URI)")
    preset: Preset | None = Field(None, description="receipt, invoice or form")
    json_schema: dict[str, Any] | None = Field(None, description="a JSON Schema (an object schema) the answer must "
                                                                 "satisfy")
    instructions: str | None = Field(None, max_length=4000, description="extra guidance (VLM backends only)")
    repair: bool = Field(True, description="ask once more with the validation errors when an answer is invalid "
                                           "(VLM backends)")
    backend: str | None = backend_field()
    max_tokens: int = max_tokens_field(1024)
    temperature: float = temperature_field()

    def schema_(self) -> dict[str, Any]:
        return self.json_schema if self.json_schema is not None else PRESETS[self.preset or "form"]


@dataclass
class ExtractResult:
    valid: bool
    data: dict[str, Any] | None
    errors: list[str]
    raw_text: str
    repaired: bool = False
    schema_name: str = ""
    run: BackendRun = field(default_factory=BackendRun)


def _precheck(ctx: "AppContext", request: ExtractRequest) -> None:
    decode_images([request.image])
    if (request.preset is None) == (request.json_schema is None):
        raise UnderstandingRequestError("give either a preset (receipt, invoice, form) or a json_schema, not both "
                                        "and not neither")
    try:
        check_schema(request.schema_())
    except SchemaError as exc:
        raise UnderstandingRequestError(str(exc)) from None
    if request.schema_().get("type") != "object":
        raise UnderstandingRequestError("the JSON Schema must describe an object (\"type\": \"object\")")
    name = chosen_backend(ctx, request.backend, request.kind)
    if name in ("default", "ocr"):
        if request.instructions:
            raise UnderstandingRequestError("instructions apply to VLM backends; the offline default fills fields "
                                            "by rules")


def _prompt(request: ExtractRequest) -> str:
    what = request.preset or "document"
    text = (f"Extract the information of this {what} as JSON valid against this JSON Schema:\n"
            f"{json.dumps(request.schema_())}\nAnswer with the JSON object only.")
    return text + ("\n" + request.instructions if request.instructions else "")


def _checked(text: str, schema: dict[str, Any]) -> tuple[Any, list[str]]:
    try:
        data = parse_json_answer(text)
    except ValueError as exc:
        return None, [f"the answer is not JSON ({exc})"]
    return data, validate(data, schema)


def _run(ctx: "AppContext", job: "Job", control: "JobControl") -> ExtractResult:
    from modules.understanding.backends.ocr import rows_text
    from modules.understanding.tasks import extract_rules

    request: ExtractRequest = job.request
    image = decode_images([request.image])[0]
    schema = request.schema_()
    schema_name = request.preset or str(schema.get("title") or "custom")
    name = chosen_backend(ctx, request.backend, request.kind)
    run = BackendRun(backend=name)
    if name in ("default", "ocr"):
        control.begin(1, 2, text="reading the text")
        run.backend = "default:ocr+rules"
        rows = rows_text(services(ctx).ocr.read(image))
        control.step(1)
        data = extract_rules.extract(rows, request.preset, schema)
        errors = validate(data, schema)
        control.step(2)
        if request.max_tokens != 1024 or request.temperature != 0.0:
            run.notes.append("max_tokens and temperature do not apply to the offline default")
        raw = "\n".join(rows)
        return ExtractResult(valid=not errors, data=data if not errors else None, errors=errors, raw_text=raw,
                             schema_name=schema_name, run=run)
    backend = services(ctx).open(name)
    control.begin(1, 2 if request.repair else 1, text="extracting")
    response_format = {"type": "json_schema", "json_schema": {"name": schema_name[:64] or "extraction",
                                                              "schema": schema}}
    conversation = [Message("user", _prompt(request), (0,))]
    answer = run_backend(ctx, job, control, backend, conversation, [image], max_tokens=request.max_tokens,
                         temperature=request.temperature, response_format=response_format, stream=False)
    note_evictions(run, backend)
    run.add(answer)
    control.step(1)
    data, errors = _checked(answer.text, schema)
    raw, repaired = answer.text, False
    if errors and request.repair:
        conversation += [Message("assistant", answer.text),
                         Message("user", "That answer is not valid against the schema:\n- " + "\n- ".join(errors[:20]) +
                                 "\nAnswer again with the corrected JSON object only.")]
        again = run_backend(ctx, job, control, backend, conversation, [image], max_tokens=request.max_tokens,
                            temperature=request.temperature, response_format=response_format, stream=False)
        run.add(again)
        control.step(2)
        data, errors = _checked(again.text, schema)
        raw, repaired = again.text, True
    if errors:
        run.notes.append("the answer is not valid against the schema" + (" even after one repair" if repaired else ""))
    return ExtractResult(valid=not errors, data=data if not errors else None, errors=errors, raw_text=raw,
                         repaired=repaired, schema_name=schema_name, run=run)


def _describe(result: Any) -> dict[str, Any] | None:
    if not isinstance(result, ExtractResult):
        return None
    return {"valid": result.valid, "data": result.data, "errors": result.errors, "raw_text": result.raw_text,
            "repaired": result.repaired, "schema": result.schema_name, **result.run.as_dict()}


EXTRACT = JobKind(name="understand_extract", request=ExtractRequest, run=_run, precheck=_precheck, describe=_describe,
                  summary="Extract a document, receipt, invoice or form to JSON against a JSON Schema or a preset, "
                          "validated locally (one repair; an invalid answer is reported with its raw text).",
                  user_errors=USER_ERRORS)
