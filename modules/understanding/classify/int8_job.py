"""The ``classify_int8_check`` job kind: export a classifier to ONNX, quantize it to INT8, and measure on the
user's own images (a folder, or the gallery) how often INT8 agrees with float and how much faster it is. The
figures are recorded with the export; Classify offers the INT8 model only if the agreement passed."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from modules.jobs.kinds import JobKind
from modules.understanding.classify.int8 import DEFAULT_THRESHOLD, AgreementRecord
from modules.understanding.image_models import DEFAULT_IMAGE_MODEL, ImageModelError
from modules.understanding.tasks.common import USER_ERRORS, UnderstandingRequestError

if TYPE_CHECKING:
    from modules.app_context import AppContext
    from modules.jobs.model import Job
    from modules.jobs.progress import JobControl


class ClassifyInt8Request(BaseModel):
    """Check a classifier's INT8 export against the float model on your own images."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["classify_int8_check"] = "classify_int8_check"
    model: str | None = Field(None, description=f"a folder of models/classifier; empty: {DEFAULT_IMAGE_MODEL}")
    source: Literal["gallery", "folder"] = Field("gallery", description="gallery: the studio's outputs (newest "
                                                                         "first); folder: the folder below")
    folder: str | None = Field(None, description="source=folder: a folder under the data dir or an --allowed-dir")
    limit: int = Field(200, ge=8, le=1000, description="at most this many images")
    threshold: float = Field(DEFAULT_THRESHOLD, ge=0.5, le=1.0, description="top-1 agreement needed to pass")
    batch: int = Field(8, ge=1, le=64, description="images per forward pass")

    @model_validator(mode="after")
    def _folder_with_source(self) -> "ClassifyInt8Request":
        if self.source == "folder" and not (self.folder or "").strip():
            raise ValueError("source=folder needs a folder")
        if self.source == "gallery" and self.folder:
            raise ValueError("folder applies to source=folder only")
        return self


def image_paths(ctx: "AppContext", request: ClassifyInt8Request) -> list[Path]:
    """The images the check runs on (at most ``limit``), or UnderstandingRequestError."""
    from modules.folder_access import FolderNotAllowed, image_files, resolve_folder, roots_of

    if request.source == "folder":
        try:
            folder = resolve_folder(request.folder or "", roots_of(ctx), what="image folder")
        except FolderNotAllowed as exc:
            raise UnderstandingRequestError(str(exc)) from None
        paths = image_files(folder, roots_of(ctx))
        where = f"the folder {request.folder!r}"
    else:
        from modules.gallery.history import HistoryIndex

        paths = [entry.path for entry in HistoryIndex(ctx.paths.outputs_dir).scan()]
        where = "the gallery"
    if len(paths) < 8:
        raise UnderstandingRequestError(f"{where} holds {len(paths)} image(s); the agreement check needs at least 8 "
                                        f"of your own images")
    return paths[:request.limit]


def _precheck(ctx: "AppContext", request: ClassifyInt8Request) -> None:
    from modules.understanding.image_models import find_image_model

    find_image_model(ctx, request.model)
    image_paths(ctx, request)


def _run(ctx: "AppContext", job: "Job", control: "JobControl") -> AgreementRecord:
    from PIL import Image

    from modules.understanding.classify.int8 import check_agreement
    from modules.understanding.image_models import load_image_model

    request: ClassifyInt8Request = job.request
    paths = image_paths(ctx, request)
    control.begin(1, 4, text=f"reading {len(paths)} images")
    model = load_image_model(ctx, request.model)
    side = 2 * max(model.image_size)   # kept small in memory; the processor resizes them to the model's size
    images = []
    for path in paths:
        try:
            with Image.open(path) as image:
                image.draft("RGB", (side, side))   # JPEG: decode at a reduced scale
                small = image.convert("RGB")
            small.thumbnail((side, side), Image.Resampling.LANCZOS)
            images.append(small)
        except OSError:
            continue   # an unreadable file is not one of the user's images to compare on
    if len(images) < 8:
        raise UnderstandingRequestError(f"only {len(images)} of the images could be read; the check needs 8")
    done = [1]

    def on_step(text: str) -> None:
        if control.should_stop:
            raise UnderstandingRequestError("stopped by the user")
        control.begin(1, 4, text=text)   # the phase's name; the bar counts phases
        control.step(done[0])
        done[0] += 1

    source = "gallery" if request.source == "gallery" else ctx.paths.shown(Path(request.folder or ""))
    record = check_agreement(ctx, model, images, source=source, threshold=request.threshold, batch=request.batch,
                             on_step=on_step)
    control.step(4)
    return record


def _describe(result: Any) -> dict[str, Any] | None:
    if not isinstance(result, AgreementRecord):
        return None
    return {"model_id": result.model_id, "images": result.images, "agreed": result.agreed,
            "agreement": round(result.agreement, 4), "threshold": result.threshold, "passed": result.passed,
            "float_seconds": round(result.float_seconds, 4), "int8_seconds": round(result.int8_seconds, 4),
            "speedup": round(result.speedup, 3), "float_mb": round(result.float_mb, 2),
            "int8_mb": round(result.int8_mb, 2), "summary": result.summary()}


CLASSIFY_INT8_CHECK = JobKind(
    name="classify_int8_check", request=ClassifyInt8Request, run=_run, precheck=_precheck, describe=_describe,
    summary="Export a classifier to ONNX, quantize it to INT8 and measure top-1 agreement with the float model and "
            "the speed-up on your own images (a folder or the gallery); INT8 is offered for classify only if it "
            "passes.",
    user_errors=(*USER_ERRORS, ImageModelError))
