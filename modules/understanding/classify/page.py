"""What the Classify sub-tab needs beyond Gradio: the model choices, the typed requests built from the page's
values, and the results as rows and text. Nothing here imports Gradio (the tab: :mod:`webui.understand_classify`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from modules.understanding.tasks.common import UnderstandingRequestError

if TYPE_CHECKING:
    from modules.app_context import AppContext
    from modules.understanding.classify.finetune_job import ClassifyFinetuneRequest
    from modules.understanding.classify.int8_job import ClassifyInt8Request
    from modules.understanding.classify.job import ClassifyRequest, ClassifyResult

TABLE_COLUMNS = ["Image", "Rank", "Label", "Score"]
NO_CHECK = "No INT8 check yet for this model: run one below on your own images before choosing INT8."


def model_choices(ctx: "AppContext") -> list[str]:
    from modules.understanding.image_models import list_image_models

    return list_image_models(ctx)


def int8_note(ctx: "AppContext", name: str | None, *, hash_now: bool = True) -> str:
    """What the page says about a model's INT8 export: its last check's figures, or that there is none.
    ``hash_now`` False (building the page): only a hash already known is used, so start-up reads no weights (a
    model never hashed has no check on record: the hash cache outlives restarts)."""
    from modules.understanding.classify.int8 import read_record
    from modules.understanding.image_models import ImageModelError, find_image_model, model_id_of, weights_file

    try:
        folder = find_image_model(ctx, name)
        weights = weights_file(folder)
        if not hash_now and (weights is None or ctx.hashes.cached_sha256(weights) is None):
            return NO_CHECK
        record = read_record(ctx, model_id_of(ctx, folder))
    except ImageModelError as exc:
        return str(exc)
    if record is None:
        return NO_CHECK
    return record.summary()


def _uploads(image: Any, files: Sequence[Any] | None) -> list[str]:
    from modules.understanding.page import file_b64

    paths = ([image] if image else []) + [f for f in (files or []) if f]
    if not paths:
        raise UnderstandingRequestError("upload an image first (the image at the left, or several below)")
    return [file_b64(p) for p in paths]


def classify_request(image: Any, files: Sequence[Any] | None, model: str | None, precision: str, top_k: float,
                     batch: float = 8) -> "ClassifyRequest":
    from modules.understanding.classify.job import ClassifyRequest

    return ClassifyRequest(images=_uploads(image, files), model=model or None, precision=precision or "float",
                           top_k=int(top_k or 5), batch=int(batch or 8))


def upload_names(image: Any, files: Sequence[Any] | None) -> list[str]:
    paths = ([image] if image else []) + [f for f in (files or []) if f]
    return [Path(str(getattr(p, "name", p))).name for p in paths]


def table_rows(result: "ClassifyResult", names: Sequence[str]) -> list[list[Any]]:
    """One row per label: image (name or number), rank, label, score (4 decimals)."""
    rows = []
    for index, predictions in enumerate(result.predictions):
        name = names[index] if index < len(names) else f"image {index + 1}"
        for rank, pred in enumerate(predictions, 1):
            rows.append([name, rank, pred["label"], round(float(pred["score"]), 4)])
    return rows


def int8_request(model: str | None, source: str, folder: str, threshold_percent: float,
                 limit: float) -> "ClassifyInt8Request":
    from modules.understanding.classify.int8_job import ClassifyInt8Request

    return ClassifyInt8Request(model=model or None, source=source or "gallery",
                               folder=(folder or "").strip() or None if source == "folder" else None,
                               threshold=float(threshold_percent) / 100.0,
                               limit=int(limit or 200))


def finetune_request(folder: str, name: str, base: str | None, epochs: float, learning_rate: float, batch: float,
                     overwrite: bool) -> "ClassifyFinetuneRequest":
    from modules.understanding.classify.finetune_job import ClassifyFinetuneRequest

    return ClassifyFinetuneRequest(folder=(folder or "").strip(), name=(name or "").strip(), base=base or None,
                                   epochs=int(epochs or 3), learning_rate=float(learning_rate or 1e-4),
                                   batch=int(batch or 8), overwrite=bool(overwrite))


def finetune_text(result: dict[str, Any]) -> str:
    held = result.get("held_out_accuracy")
    text = (f"{result['name']}: {len(result['labels'])} labels, {result['train_images']} training images, "
            f"{result['steps']} steps; training accuracy {result['train_accuracy']:.1%}")
    if held is not None:
        text += f", held-out accuracy {held:.1%} on {result['held_out_images']} images"
    return text + (f". {result['note']}" if result.get("note") else ". Saved: choose it in the model list.")
