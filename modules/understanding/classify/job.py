"""The ``classify`` job kind: the top-k labels of each image, with scores, from a classifier of
``models/classifier`` (float, or its INT8 export once the agreement check has passed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from modules.jobs.kinds import JobKind
from modules.understanding.image_models import DEFAULT_IMAGE_MODEL, ImageModelError
from modules.understanding.tasks.common import USER_ERRORS, decode_images

if TYPE_CHECKING:
    from modules.app_context import AppContext
    from modules.jobs.model import Job
    from modules.jobs.progress import JobControl

MAX_CLASSIFY_IMAGES = 64


class ClassifyRequest(BaseModel):
    """Classify images. A grouped classifier (labels ``group=value``, like the shapes classifier) gives the top
    ``top_k`` of each group, with scores within the group."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["classify"] = "classify"
    images: list[str] = Field(..., min_length=1, max_length=MAX_CLASSIFY_IMAGES,
                              description="base64 images (or data URIs)")
    model: str | None = Field(None, description=f"a folder of models/classifier; empty: {DEFAULT_IMAGE_MODEL}")
    precision: Literal["float", "int8"] = Field(
        "float", description="int8: the model's INT8 ONNX export, allowed once its agreement check has passed "
                             "(job kind classify_int8_check)")
    top_k: int = Field(5, ge=1, le=100, description="labels per image (per group for a grouped classifier)")
    batch: int = Field(8, ge=1, le=64, description="images per forward pass")


@dataclass
class ClassifyResult:
    model: str
    model_id: str
    precision: str
    predictions: list[list[dict[str, Any]]]
    notes: list[str] = field(default_factory=list)


def _precheck(ctx: "AppContext", request: ClassifyRequest) -> None:
    from modules.understanding.classify.int8 import require_passed
    from modules.understanding.image_models import find_image_model, model_id_of

    decode_images(request.images)
    folder = find_image_model(ctx, request.model)
    if request.precision == "int8":
        require_passed(ctx, model_id_of(ctx, folder))


def _run(ctx: "AppContext", job: "Job", control: "JobControl") -> ClassifyResult:
    from modules.understanding.image_models import find_image_model, load_image_model, model_id_of, top_predictions

    request: ClassifyRequest = job.request
    images = decode_images(request.images)
    control.begin(1, len(images), text=f"classifying {len(images)} image(s)")
    notes: list[str] = []
    if request.precision == "int8":
        from modules.understanding.classify.int8 import load_int8

        folder = find_image_model(ctx, request.model)
        runner = load_int8(ctx, folder, model_id_of(ctx, folder))
        labels, groups, model_id = runner.labels, runner.groups, runner.model_id
        logits_of = runner.logits
    else:
        model = load_image_model(ctx, request.model)
        if model.evicted:
            notes.append(f"loading {model.name} unloaded {', '.join(model.evicted)} to stay within the model "
                         f"memory budget")
        labels, groups, model_id = model.labels, model.groups, model.model_id
        logits_of = model.logits
    predictions: list[list[dict[str, Any]]] = []
    for start in range(0, len(images), request.batch):
        if control.should_stop:
            notes.append(f"stopped after {start} of {len(images)} images")
            break
        chunk = images[start:start + request.batch]
        for row in top_predictions(logits_of(chunk, request.batch), labels, request.top_k, groups):
            predictions.append([p.as_dict() for p in row])
        control.step(len(predictions))
    return ClassifyResult(model=model_id.partition("@")[0], model_id=model_id, precision=request.precision,
                          predictions=predictions, notes=notes)


def _describe(result: Any) -> dict[str, Any] | None:
    if not isinstance(result, ClassifyResult):
        return None
    return {"model": result.model, "model_id": result.model_id, "precision": result.precision,
            "predictions": result.predictions, "notes": list(result.notes)}


CLASSIFY = JobKind(name="classify", request=ClassifyRequest, run=_run, precheck=_precheck, describe=_describe,
                   summary="Classify images with a classifier of models/classifier: the top-k labels with scores, "
                           "batched; float, or INT8 once its agreement check has passed.",
                   user_errors=(*USER_ERRORS, ImageModelError))
