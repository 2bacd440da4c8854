"""A1111's ``POST /sdapi/v1/create/embedding`` and ``POST /sdapi/v1/train/embedding``, on the
``train_embedding`` job kind (:mod:`modules.training.embedding_job`).

Both take A1111's request shape (the keyword arguments of its ``create_embedding`` / ``train_embedding``)
and answer ``{"info": ...}`` as A1111 does, a failed job included (A1111 answers 200 with the error in
``info``). A field A1111 does not have is refused (422); so is one whose value asks for what is not
offered here (learning-rate schedules, gradient accumulation, variable sizes, tag shuffling or dropout,
loss weighting). Fields that have no effect here (preview images, the log directory, the task id) are
accepted with a warning in ``info``, never silently.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Body, Depends
from pydantic import BaseModel

from modules.api.errors import ApiError, error_responses
from modules.api.security import principal_of

if TYPE_CHECKING:
    from modules.app_context import AppContext

CREATE_FIELDS = frozenset({"name", "num_vectors_per_token", "overwrite_old", "init_text"})
TRAIN_FIELDS = frozenset({
    "id_task", "embedding_name", "learn_rate", "batch_size", "gradient_step", "data_root", "log_directory",
    "training_width", "training_height", "varsize", "steps", "clip_grad_mode", "clip_grad_value", "shuffle_tags",
    "tag_drop_out", "latent_sampling_method", "use_weight", "create_image_every", "save_embedding_every",
    "template_filename", "save_image_with_stored_embedding", "preview_from_txt2img", "preview_prompt",
    "preview_negative_prompt", "preview_steps", "preview_sampler_name", "preview_cfg_scale", "preview_seed",
    "preview_width", "preview_height"})
#: A1111's textual_inversion_templates, as one caption line each
TEMPLATES = {"none": "{token}", "subject": "a photo of a {token}", "style": "a painting, art by {token}",
             "subject_filewords": "a photo of a {token}, {filewords}",
             "style_filewords": "a painting of {filewords}, art by {token}"}
PREVIEW_FIELDS = ("preview_from_txt2img", "preview_prompt", "preview_negative_prompt", "preview_steps",
                  "preview_sampler_name", "preview_cfg_scale", "preview_seed", "preview_width", "preview_height",
                  "save_image_with_stored_embedding")


class TrainResponse(BaseModel):
    info: str


def _unknown(payload: dict[str, Any], known: frozenset[str]) -> None:
    extra = sorted(set(payload) - known)
    if extra:
        raise ApiError(422, f"unknown field(s) for this route: {', '.join(extra)}", "ValidationError")


def _number(value: Any, field: str, kind: type = float) -> Any:
    try:
        return kind(float(value)) if kind is int else kind(value)
    except (TypeError, ValueError):
        raise ApiError(422, f"{field}: expected a number, got {value!r}", "ValidationError") from None


def _truthy(value: Any) -> bool:
    return value not in (None, False, 0, "", "false", "False", "0")


def create_request(payload: dict[str, Any]) -> Any:
    from modules.training.embedding_request import TrainEmbeddingRequest

    _unknown(payload, CREATE_FIELDS)
    if "name" not in payload:
        raise ApiError(422, "name: required", "ValidationError")
    return TrainEmbeddingRequest(name=str(payload["name"]), init_text=str(payload.get("init_text", "*") or ""),
                                 num_vectors_per_token=_number(payload.get("num_vectors_per_token", 1),
                                                               "num_vectors_per_token", int),
                                 overwrite=_truthy(payload.get("overwrite_old", False)), steps=0)


def _template(name: Any) -> tuple[str, str | None]:
    stem = Path(str(name or "subject_filewords.txt")).stem.lower()
    if stem not in TEMPLATES:
        raise ApiError(422, f"template_filename {name!r} is not offered here: one of "
                            f"{', '.join(k + '.txt' for k in TEMPLATES)}", "ValidationError")
    return TEMPLATES[stem], f"template {stem}.txt: one caption line used, {TEMPLATES[stem]!r}"


def train_request(payload: dict[str, Any]) -> tuple[Any, list[str]]:
    """The typed request for an A1111 train/embedding payload and the warnings to report."""
    from modules.training.embedding_request import TrainEmbeddingRequest

    _unknown(payload, TRAIN_FIELDS)
    for field in ("embedding_name", "data_root", "steps"):
        if field not in payload:
            raise ApiError(422, f"{field}: required", "ValidationError")
    warnings: list[str] = []
    rate = str(payload.get("learn_rate", "0.005")).strip()
    if not re.fullmatch(r"[0-9.eE+-]+", rate):
        raise ApiError(422, f"learn_rate {rate!r}: learning-rate schedules (rate:step, ...) are not offered here; "
                            "give one number", "ValidationError")
    if _number(payload.get("gradient_step", 1), "gradient_step", int) != 1:
        raise ApiError(422, "gradient_step: gradient accumulation is not offered here (1 only)", "ValidationError")
    if _truthy(payload.get("varsize", False)):
        raise ApiError(422, "varsize: variable image sizes are not offered here (square crops)", "ValidationError")
    for field in ("shuffle_tags", "use_weight"):
        if _truthy(payload.get(field, False)):
            raise ApiError(422, f"{field}: not offered here", "ValidationError")
    if _number(payload.get("tag_drop_out", 0), "tag_drop_out") != 0:
        raise ApiError(422, "tag_drop_out: not offered here (0 only)", "ValidationError")
    width = _number(payload.get("training_width", 512), "training_width", int)
    height = _number(payload.get("training_height", width), "training_height", int)
    if width != height:
        raise ApiError(422, "training_width and training_height must be equal (square training images)",
                       "ValidationError")
    clip_mode = str(payload.get("clip_grad_mode", "disabled") or "disabled").lower()
    if clip_mode not in ("disabled", "norm"):
        raise ApiError(422, f"clip_grad_mode {clip_mode!r}: 'disabled' or 'norm' here", "ValidationError")
    max_norm = _number(payload.get("clip_grad_value", 0.1), "clip_grad_value") if clip_mode == "norm" else None
    method = str(payload.get("latent_sampling_method", "once") or "once")
    if method != "once":
        warnings.append(f"latent_sampling_method {method!r}: latents are sampled once here")
    template, note = _template(payload.get("template_filename"))
    warnings.append(note or "")
    if payload.get("log_directory"):
        warnings.append("log_directory: the loss log is kept in the session folder")
    if _number(payload.get("create_image_every", 0), "create_image_every", int):
        warnings.append("create_image_every: no preview images are made while training an embedding")
    if any(field in payload for field in PREVIEW_FIELDS):
        warnings.append("preview_* and save_image_with_stored_embedding: no preview images are made")
    if payload.get("id_task"):
        warnings.append("id_task: follow the job through /sdapi/v1/progress")
    every = _number(payload.get("save_embedding_every", 0), "save_embedding_every", int)
    try:
        req = TrainEmbeddingRequest(
            name=str(payload["embedding_name"]), initial="file", dataset=str(payload["data_root"]),
            caption_template=template, resolution=width, steps=_number(payload["steps"], "steps", int),
            batch_size=_number(payload.get("batch_size", 1), "batch_size", int), learning_rate=float(rate),
            max_grad_norm=max_norm, **({"checkpoint_every": every} if every > 0 else {}))
    except ValueError as exc:
        from modules.api.sdapi_common import first_error

        raise ApiError(422, first_error(exc), "ValidationError") from None
    return req, [w for w in warnings if w]


def _run(ctx: "AppContext", req: Any, principal: str | None) -> tuple[Any, str | None]:
    """(the finished job or None, the error message or None)."""
    from modules.api.sdapi_common import sdapi_owner
    from modules.jobs.model import JobState
    from modules.jobs.submit import submit_job

    try:
        job = submit_job(ctx, req, owner=sdapi_owner(principal), source="sdapi")
    except ctx.kinds.of(req).user_errors as exc:
        return None, str(exc)
    ctx.queue.wait(job.id)
    if job.state is not JobState.SUCCEEDED:
        return job, job.error or job.state.value
    return job, None


def add_train_routes(router: APIRouter, ctx: "AppContext") -> None:
    @router.post("/create/embedding", response_model=TrainResponse, responses=error_responses(422))
    def create_embedding(payload: dict[str, Any] = Body(...),
                         principal: str | None = Depends(principal_of)) -> TrainResponse:
        try:
            req = create_request(payload)
        except ValueError as exc:
            from modules.api.sdapi_common import first_error

            raise ApiError(422, first_error(exc), "ValidationError") from None
        job, failure = _run(ctx, req, principal)
        if failure is not None:
            return TrainResponse(info=f"create embedding error: {ctx.paths.scrub(failure)}")
        return TrainResponse(info=f"create embedding filename: {job.result['embedding']}")

    @router.post("/train/embedding", response_model=TrainResponse, responses=error_responses(422))
    def train_embedding(payload: dict[str, Any] = Body(...),
                        principal: str | None = Depends(principal_of)) -> TrainResponse:
        req, warnings = train_request(payload)
        job, failure = _run(ctx, req, principal)
        filename = (job.result or {}).get("embedding") if job is not None and isinstance(job.result, dict) else None
        info = (f"train embedding complete: filename: {filename} error: "
                f"{ctx.paths.scrub(failure) if failure else None}")
        if warnings:
            info += " · warnings: " + "; ".join(warnings)
        return TrainResponse(info=info)
