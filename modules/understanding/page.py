"""What the Understand tab needs beyond Gradio: the backend choices per task, the typed requests built from
the page's values, and the results rendered as text for the page. Nothing here imports Gradio; the tab
(:mod:`webui.understand_tab`) only lays out fields and follows the jobs.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modules.understanding.tasks.common import UnderstandingRequestError

if TYPE_CHECKING:
    from modules.app_context import AppContext
    from modules.understanding.tasks.batch_caption import BatchCaptionRequest, BatchCaptionResult
    from modules.understanding.tasks.caption import CaptionRequest, CaptionResult
    from modules.understanding.tasks.check import CheckResult
    from modules.understanding.tasks.common import BackendRun
    from modules.understanding.tasks.extract import ExtractRequest, ExtractResult

PRESETS = ("receipt", "invoice", "form")
OWN_SCHEMA = "my JSON Schema"


def backend_choices(ctx: "AppContext", *, ocr: bool = True) -> list[tuple[str, str]]:
    """(label, name) of the backends a task can use: the offline default, the remote service (named by its
    model when one is set), OCR (tasks that read text), every local VLM folder."""
    from modules.understanding.tasks.common import services

    svc = services(ctx)
    settings = ctx.settings.current
    remote = f"remote ({settings.vlm_api_model})" if settings.vlm_api_model else "remote (set it in Settings)"
    choices = [("default (offline)", "default"), (remote, "remote")]
    if ocr:
        choices.append(("ocr", "ocr"))
    return choices + [(name, name) for name in svc.local_models()]


def default_backend(ctx: "AppContext", *, ocr: bool = True, task: str | None = None) -> str:
    """The backend a sub-tab starts on: Settings → ``understanding_backend_<task>``, else
    ``understanding_backend`` (when it is one of the choices)."""
    from modules.understanding.tasks.common import services

    name = services(ctx).default_backend_name(task)
    names = [value for _, value in backend_choices(ctx, ocr=ocr)]
    return name if name in names else "default"


def default_chat_model(ctx: "AppContext", models: list[str]) -> str | None:
    """The model the Chat sub-tab starts on: Settings → ``understanding_backend_chat`` (else
    ``understanding_backend``) when it names a served model (``default`` is the first one)."""
    from modules.understanding.backends.ocr import OCR_MODEL
    from modules.understanding.tasks.common import services

    name = services(ctx).default_backend_name("chat")
    name = OCR_MODEL if name == "ocr" else name
    return name if name in models else (models or [None])[0]


def file_b64(path: Any, what: str = "image") -> str:
    """The uploaded file's bytes as base64 (so a PNG keeps its infotext); a missing upload is said."""
    if not path:
        raise UnderstandingRequestError(f"upload an {what} first")
    data = Path(getattr(path, "name", path)).read_bytes()
    return base64.b64encode(data).decode()


def split_list(text: str | None) -> list[str]:
    return [item.strip() for item in (text or "").replace("\n", ",").split(",") if item.strip()]


def caption_request(image: Any, detail: str, backend: str, prompt: str, underscores: bool, escape: bool,
                    blacklist: str, max_tags: float) -> "CaptionRequest":
    from modules.understanding.tasks.caption import CaptionRequest

    tags = detail == "tags"
    return CaptionRequest(image=file_b64(image), detail=detail, backend=backend or None,
                          prompt=(prompt or "").strip() or None,
                          **({"underscores": bool(underscores), "escape_brackets": bool(escape),
                              "blacklist": split_list(blacklist), "max_tags": int(max_tags or 50)} if tags else {}))


def extract_request(image: Any, preset: str, schema_text: str, instructions: str, backend: str
                    ) -> "ExtractRequest":
    from modules.understanding.tasks.extract import ExtractRequest

    common = {"image": file_b64(image), "backend": backend or None,
              "instructions": (instructions or "").strip() or None}
    if preset in PRESETS:
        return ExtractRequest(preset=preset, **common)
    try:
        schema = json.loads(schema_text or "")
    except ValueError as exc:
        raise UnderstandingRequestError(f"the JSON Schema is not valid JSON: {exc}") from None
    if not isinstance(schema, dict):
        raise UnderstandingRequestError("the JSON Schema must be a JSON object")
    return ExtractRequest(json_schema=schema, **common)


def batch_request(folder: str, preview: bool, overwrite: bool, limit: float, detail: str, backend: str,
                  prompt: str, underscores: bool, escape: bool, blacklist: str, max_tags: float
                  ) -> "BatchCaptionRequest":
    from modules.understanding.tasks.batch_caption import BatchCaptionRequest

    tags = detail == "tags"
    return BatchCaptionRequest(folder=(folder or "").strip(), preview=bool(preview), overwrite=bool(overwrite),
                               limit=int(limit) if limit else None, detail=detail, backend=backend or None,
                               prompt=(prompt or "").strip() or None,
                               **({"underscores": bool(underscores), "escape_brackets": bool(escape),
                                   "blacklist": split_list(blacklist), "max_tags": int(max_tags or 50)}
                                  if tags else {}))


def run_note(run: "BackendRun") -> str:
    """One line about the run: the backend, the provider's token usage, notes."""
    parts = [f"backend: {run.backend}"]
    if run.usage.prompt_tokens or run.usage.completion_tokens:
        parts.append(f"tokens: {run.usage.prompt_tokens} in, {run.usage.completion_tokens} out")
    return " · ".join(parts + list(run.notes))


def extract_view(result: "ExtractResult") -> tuple[Any, str, str]:
    """(the JSON to show, the raw text, the status line): an invalid answer is never shown as data."""
    if result.valid:
        note = " (valid after one repair)" if result.repaired else ""
        return result.data, "", f"valid {result.schema_name or 'JSON'}{note} · {run_note(result.run)}"
    errors = "; ".join(result.errors) or "the answer is not valid JSON"
    return None, result.raw_text, f"not valid: {errors} · {run_note(result.run)}"


def check_view(result: "CheckResult") -> str:
    """Markdown of a consistency check: the score, then matching / missing / extra."""
    def items(values: list[str]) -> str:
        return ", ".join(values) if values else "—"

    return (f"**Score: {result.score:.2f}**\n\n**Checked against:** {result.text}\n\n"
            f"- **matching:** {items(result.matching)}\n- **missing:** {items(result.missing)}\n"
            f"- **extra:** {items(result.extra)}\n\n{result.explanation}\n\n_{run_note(result.run)}_")


def caption_view(result: "CaptionResult") -> tuple[str, str]:
    return result.caption, run_note(result.run)


def batch_rows(result: "BatchCaptionResult") -> list[list[str]]:
    return [[item.name, item.status, item.caption or item.error] for item in result.items]
