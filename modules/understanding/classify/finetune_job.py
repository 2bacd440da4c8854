"""The ``classify_finetune`` job kind: fine-tune a classifier of ``models/classifier`` on a labelled folder
(one sub-folder per label) in the training lane, with progress, saved as ``<data dir>/models/classifier/<name>/``
(Classify lists it)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from modules.jobs.kinds import JobKind
from modules.training.lora.job import TRAINING_LANE
from modules.understanding.classify.finetune import FinetuneOutcome
from modules.understanding.image_models import DEFAULT_IMAGE_MODEL, ImageModelError
from modules.understanding.tasks.common import USER_ERRORS, UnderstandingRequestError

if TYPE_CHECKING:
    from modules.app_context import AppContext
    from modules.jobs.model import Job
    from modules.jobs.progress import JobControl


class ClassifyFinetuneRequest(BaseModel):
    """Fine-tune a classifier on a labelled folder into a new classifier folder."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["classify_finetune"] = "classify_finetune"
    folder: str = Field(..., description="a folder (under the data dir or an --allowed-dir) with one sub-folder "
                                         "of images per label")
    name: str = Field(..., description="the new classifier's folder name in models/classifier")
    base: str | None = Field(None, description=f"the classifier to start from; empty: {DEFAULT_IMAGE_MODEL}")
    epochs: int = Field(3, ge=1, le=100)
    learning_rate: float = Field(1e-4, gt=0.0, le=1e-2)
    batch: int = Field(8, ge=1, le=128)
    seed: int = Field(0, ge=0)
    overwrite: bool = Field(False, description="replace a classifier of the same name in the data dir")


def _folder(ctx: "AppContext", request: ClassifyFinetuneRequest) -> Path:
    from modules.folder_access import FolderNotAllowed, resolve_folder, roots_of

    try:
        return resolve_folder(request.folder, roots_of(ctx), what="labelled folder")
    except FolderNotAllowed as exc:
        raise UnderstandingRequestError(str(exc)) from None


def _out(ctx: "AppContext", request: ClassifyFinetuneRequest) -> Path:
    from modules.understanding.classify.finetune import check_name
    from modules.understanding.image_models import classifier_roots

    name = check_name(request.name)
    if name == DEFAULT_IMAGE_MODEL:
        raise ImageModelError(f"{DEFAULT_IMAGE_MODEL} is the embedded default; give the new classifier another name")
    out = ctx.paths.data_dir / "models" / "classifier" / name
    taken = [root / name for root in classifier_roots(ctx) if (root / name).exists()]
    if taken and not (request.overwrite and taken == [out]):
        raise ImageModelError(f"a classifier named {name!r} already exists" +
                              (" (tick overwrite to replace it)" if taken == [out] else " in the project's models"))
    return out


def _dataset(ctx: "AppContext", request: ClassifyFinetuneRequest) -> Any:
    from modules.folder_access import image_files, roots_of
    from modules.understanding.classify.finetune import labelled_set

    return labelled_set(_folder(ctx, request), lambda sub: image_files(sub, roots_of(ctx)))


def _precheck(ctx: "AppContext", request: ClassifyFinetuneRequest) -> None:
    from modules.understanding.image_models import find_image_model

    find_image_model(ctx, request.base)
    _out(ctx, request)
    _dataset(ctx, request)


def _run(ctx: "AppContext", job: "Job", control: "JobControl") -> dict[str, Any]:
    from modules.understanding.classify.finetune import finetune
    from modules.understanding.image_models import find_image_model

    request: ClassifyFinetuneRequest = job.request
    base = find_image_model(ctx, request.base)
    out = _out(ctx, request)
    data = _dataset(ctx, request)
    per_epoch = (len(data.train) + request.batch - 1) // request.batch
    control.begin(1, request.epochs * per_epoch, text=f"fine-tuning {base.name} on {len(data.labels)} labels")

    def on_step(step: int, total: int, loss: float) -> None:
        control.step(step)

    def should_stop() -> bool:
        control.pause_point()
        return control.should_stop

    outcome: FinetuneOutcome = finetune(base, data, out, epochs=request.epochs, learning_rate=request.learning_rate,
                                        batch=request.batch, seed=request.seed, on_step=on_step,
                                        should_stop=should_stop, device=_device(ctx))
    result: dict[str, Any] = {"name": out.name, "base": base.name, "labels": outcome.labels, "steps": outcome.steps,
                              "train_images": outcome.train_images, "held_out_images": outcome.held_out_images,
                              "train_accuracy": round(outcome.train_accuracy, 4),
                              "held_out_accuracy": None if outcome.held_out_accuracy is None
                              else round(outcome.held_out_accuracy, 4),
                              "final_loss": round(outcome.final_loss, 5)}
    if outcome.stopped:
        result["note"] = "stopped before the end: nothing was saved"
    else:
        result["folder"] = ctx.paths.shown(out)
    return result


def _device(ctx: "AppContext") -> str:
    from modules.models.devices import device_choice

    return device_choice(ctx.flags)[0]


def _describe(result: Any) -> dict[str, Any] | None:
    return dict(result) if isinstance(result, dict) else None


CLASSIFY_FINETUNE = JobKind(
    name="classify_finetune", request=ClassifyFinetuneRequest, run=_run, precheck=_precheck, describe=_describe,
    summary="Fine-tune a classifier of models/classifier on a labelled folder (one sub-folder per label) into a new "
            "models/classifier/<name> folder, with held-out accuracy.",
    user_errors=(*USER_ERRORS, ImageModelError), lane=TRAINING_LANE, yields_to=("device",))
