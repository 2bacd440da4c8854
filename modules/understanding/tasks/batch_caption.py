"""The ``understand_batch_caption`` job kind: caption every image of a server folder into a ``.txt`` file
beside it (the kohya/LoRA-training convention: ``cat.png`` → ``cat.txt``).

The folder must lie under the data dir or an ``--allowed-dir`` root (:mod:`modules.folder_access`).
``preview`` (the default) captions without writing anything, so the user sees what would be written first;
an image that already has a ``.txt`` is skipped unless ``overwrite``, so a run that was interrupted picks up
where it stopped. Each ``.txt`` is written atomically (a temporary file, then a rename). Progress is one
step per image; Interrupt stops after the current image and the summary says what was done.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ConfigDict, Field

from modules.jobs.kinds import JobKind
from modules.understanding.backends.base import BackendUnavailable, Usage
from modules.understanding.interrogate import InterrogatorMissing
from modules.understanding.tasks.caption import CaptionOptions, Detail, caption_image, check_caption_options
from modules.understanding.tasks.common import USER_ERRORS, BackendRun, UnderstandingRequestError, chosen_backend

if TYPE_CHECKING:
    from modules.app_context import AppContext
    from modules.jobs.model import Job
    from modules.jobs.progress import JobControl

CAPTION_SUFFIX = ".txt"


class BatchCaptionRequest(CaptionOptions):
    """Caption the images of a folder into ``.txt`` files beside them (or only preview the captions)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["understand_batch_caption"] = "understand_batch_caption"
    folder: str = Field(..., min_length=1, max_length=4096,
                        description="a folder under the data dir or an --allowed-dir root (relative: the data dir)")
    preview: bool = Field(True, description="caption without writing any file (see what would be written)")
    overwrite: bool = Field(False, description="replace .txt files that already exist (else those images are "
                                               "skipped: a second run resumes)")
    limit: int | None = Field(None, ge=1, le=100_000, description="at most this many images to caption")
    detail: Detail = Field("tags", description="short, detailed, or tags (kohya style)")


@dataclass
class BatchCaptionItem:
    name: str
    caption: str = ""
    status: Literal["written", "previewed", "skipped", "failed"] = "written"
    error: str = ""


@dataclass
class BatchCaptionResult:
    folder: str
    preview: bool
    total: int
    items: list[BatchCaptionItem] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0
    run: BackendRun = field(default_factory=BackendRun)

    def count(self, status: str) -> int:
        return sum(1 for item in self.items if item.status == status)

    @property
    def captioned(self) -> int:
        return self.count("written") + self.count("previewed")

    @property
    def images_per_second(self) -> float:
        return self.captioned / self.seconds if self.seconds > 0 else 0.0

    def text(self) -> str:
        verb = "previewed (nothing written)" if self.preview else "written"
        parts = [f"{self.captioned} of {self.total} captioned and {verb}"]
        if self.count("skipped"):
            parts.append(f"{self.count('skipped')} skipped (a .txt exists; tick overwrite to replace)")
        if self.count("failed"):
            parts.append(f"{self.count('failed')} failed")
        left = self.total - len(self.items)
        if left > 0:
            parts.append(f"{left} not reached" + (" (interrupted: run again to resume)" if self.interrupted else ""))
        parts.append(f"{self.seconds:.1f} s ({self.images_per_second:.2f} images/s)")
        return " · ".join(parts)


def caption_path(image: Path) -> Path:
    return image.with_suffix(CAPTION_SUFFIX)


def write_caption(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (a crash leaves the old file or none, never half a caption)."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text + "\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _folder(ctx: "AppContext", request: BatchCaptionRequest) -> Path:
    from modules.folder_access import FolderNotAllowed, resolve_folder, roots_of

    try:
        return resolve_folder(request.folder, roots_of(ctx), what="caption folder")
    except FolderNotAllowed as exc:
        raise UnderstandingRequestError(str(exc)) from None


def _images(ctx: "AppContext", folder: Path) -> list[Path]:
    from modules.folder_access import image_files, roots_of

    return image_files(folder, roots_of(ctx))


def _precheck(ctx: "AppContext", request: BatchCaptionRequest) -> None:
    folder = _folder(ctx, request)
    if not _images(ctx, folder):
        raise UnderstandingRequestError(f"the caption folder {request.folder!r} holds no images")
    check_caption_options(ctx, request)


def _run(ctx: "AppContext", job: "Job", control: "JobControl") -> BatchCaptionResult:
    from PIL import Image

    request: BatchCaptionRequest = job.request
    folder = _folder(ctx, request)
    images = _images(ctx, folder)
    if request.limit is not None:
        images = images[:request.limit]
    result = BatchCaptionResult(folder=ctx.paths.shown(folder), preview=request.preview, total=len(images),
                                run=BackendRun(backend=chosen_backend(ctx, request.backend, request.kind)))
    control.begin(1, len(images), text="previewing captions" if request.preview else "captioning")
    started = time.monotonic()
    for index, path in enumerate(images):
        if control.should_stop:
            result.interrupted = True
            break
        target = caption_path(path)
        if target.exists() and not request.overwrite:
            result.items.append(BatchCaptionItem(path.name, target.read_text(encoding="utf-8", errors="replace")
                                                 .strip(), "skipped"))
            control.step(index + 1)
            continue
        try:
            with Image.open(path) as opened:
                image = opened.convert("RGB")
            answer = caption_image(ctx, job, control, request, image, stream=False)
            if not request.preview:
                write_caption(target, answer.caption)
        except BackendUnavailable:
            raise  # no service, no model folder: every image would fail the same way, so the job says it once
        except USER_ERRORS as exc:
            if control.should_stop:
                result.interrupted = True
                break
            result.items.append(BatchCaptionItem(path.name, "", "failed", ctx.paths.scrub(str(exc))))
        except OSError as exc:
            result.items.append(BatchCaptionItem(path.name, "", "failed",
                                                 ctx.paths.scrub(f"{type(exc).__name__}: {exc}")))
        else:
            result.run.backend = answer.run.backend
            result.run.usage = Usage(result.run.usage.prompt_tokens + answer.run.usage.prompt_tokens,
                                     result.run.usage.completion_tokens + answer.run.usage.completion_tokens)
            result.run.notes.extend(n for n in answer.run.notes if n not in result.run.notes)
            result.items.append(BatchCaptionItem(path.name, answer.caption,
                                                 "previewed" if request.preview else "written"))
        control.step(index + 1)
    result.seconds = time.monotonic() - started
    return result


def _describe(result: Any) -> dict[str, Any] | None:
    if not isinstance(result, BatchCaptionResult):
        return None
    return {"folder": result.folder, "preview": result.preview, "total": result.total,
            "written": result.count("written"), "previewed": result.count("previewed"),
            "skipped": result.count("skipped"), "failed": result.count("failed"), "interrupted": result.interrupted,
            "seconds": round(result.seconds, 3), "summary": result.text(),
            "items": [{"name": i.name, "caption": i.caption, "status": i.status, "error": i.error}
                      for i in result.items],
            **result.run.as_dict()}


BATCH_CAPTION = JobKind(
    name="understand_batch_caption", request=BatchCaptionRequest, run=_run, precheck=_precheck, describe=_describe,
    summary="Caption every image of a folder (under the data dir or an --allowed-dir root) into .txt files beside "
            "the images, kohya style: a preview first, resumable (existing .txt skipped unless overwrite).",
    user_errors=(*USER_ERRORS, InterrogatorMissing))
