"""The A1111-compatible ``/sdapi/v1`` routes, with A1111's exact response shapes.

Every route answers JSON (``null`` where A1111 answers nothing) because clients such as
``webuiapi`` call ``.json()`` on every response. Generation goes through the job queue.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Body, Depends

from modules.api.errors import ApiError
from modules.api.sdapi_models import (PngInfoPayload, PngInfoResponse, ProgressResponse, ProgressState,
                                      SamplerItem, SchedulerItem, SdModelItem, SdTxt2ImgPayload,
                                      TextToImageResponse)
from modules.generation.requests import Txt2ImgRequest
from modules.jobs.queue import Job, JobState, QueueFullError
from modules.version import VERSION

if TYPE_CHECKING:
    from modules.app_context import AppContext
    from modules.generation.txt2img import GenerationResult


def _raise_for_submit_error(exc: Exception) -> None:
    from modules.generation.samplers import SamplerError
    from modules.generation.validation import InvalidRequestError
    from modules.models.errors import ModelLoadError

    if isinstance(exc, SamplerError):
        raise ApiError(400, str(exc), "SamplerNotFound") from None
    if isinstance(exc, InvalidRequestError):
        raise ApiError(400, str(exc), "InvalidRequest") from None
    if isinstance(exc, ModelLoadError):
        raise ApiError(404, str(exc), "ModelNotFound") from None
    if isinstance(exc, QueueFullError):
        raise ApiError(429, str(exc), "QueueFull") from None
    raise exc


def _processed_info(req: Txt2ImgRequest, result: "GenerationResult") -> str:
    """A1111's ``Processed.js()``: the keys and their order are what clients parse."""
    plan = result.seed_plan
    info = {
        "prompt": req.prompt,
        "all_prompts": result.prompts,
        "negative_prompt": req.negative_prompt,
        "all_negative_prompts": result.negative_prompts,
        "seed": result.seeds[0] if result.seeds else (plan.seed if plan else req.seed),
        "all_seeds": result.seeds,
        "subseed": result.subseeds[0] if result.subseeds else (plan.subseed if plan else req.subseed),
        "all_subseeds": result.subseeds,
        "subseed_strength": req.subseed_strength,
        "width": result.width,
        "height": result.height,
        "sampler_name": result.sampler_name,
        "cfg_scale": req.cfg_scale,
        "steps": req.steps,
        "batch_size": req.batch_size,
        "restore_faces": False,
        "face_restoration_model": None,
        "sd_model_name": result.model_name,
        "sd_model_hash": result.model_hash,
        "sd_vae_name": None,
        "sd_vae_hash": None,
        "seed_resize_from_w": req.seed_resize_from_w,
        "seed_resize_from_h": req.seed_resize_from_h,
        "denoising_strength": None,
        "extra_generation_params": {"Schedule type": result.schedule_label},
        "index_of_first_image": 0,
        "infotexts": result.infotexts,
        "styles": req.styles,
        "job_timestamp": result.job_timestamp,
        "clip_skip": req.clip_skip,
        "is_using_inpainting_conditioning": False,
        "version": VERSION,
    }
    return json.dumps(info, default=lambda o: None)


def _finished(job: Job) -> Any:
    if job.state is JobState.FAILED:
        raise ApiError(422 if job.user_error else 500, job.error or "the job failed",
                       "JobFailed" if job.user_error else "InternalError")
    if job.state is JobState.CANCELLED and job.result is None:
        raise ApiError(409, job.error or "the job was cancelled", "Cancelled")
    return job.result


def build_sdapi_router(ctx: "AppContext", dependencies: list[Any]) -> APIRouter:
    from modules.generation import service
    from modules.generation.samplers import list_samplers, list_schedules
    from modules.images.codec import decode_image_base64, encode_png_base64
    from modules.images.infotext import parse_infotext
    from modules.images.saving import read_infotext

    router = APIRouter(prefix="/sdapi/v1", dependencies=[Depends(d) for d in dependencies],
                       tags=["A1111-compatible API"])

    @router.post("/txt2img", response_model=TextToImageResponse)
    def txt2img(payload: SdTxt2ImgPayload = Body(...)) -> TextToImageResponse:
        try:
            req = payload.to_request()
        except ValueError as exc:  # pydantic ValidationError is a ValueError
            raise ApiError(422, _first_error(exc), "ValidationError") from None
        try:
            job = service.submit_txt2img(ctx, req, owner="sdapi")
        except Exception as exc:  # noqa: BLE001 - mapped to 4xx or re-raised
            _raise_for_submit_error(exc)
        ctx.queue.wait(job.id)
        result = _finished(job)
        images = [encode_png_base64(img, text) for img, text in zip(result.images, result.infotexts)] \
            if payload.send_images else []
        params = payload.model_dump(exclude={"alwayson_scripts"})
        params["alwayson_scripts"] = payload.alwayson_scripts
        return TextToImageResponse(images=images, parameters=params, info=_processed_info(req, result))

    @router.get("/progress", response_model=ProgressResponse)
    def progress(skip_current_image: bool = False) -> ProgressResponse:
        job = ctx.queue.current()
        if job is None:
            return ProgressResponse(progress=0.0, eta_relative=0.0, state=ProgressState(),
                                    textinfo=None)
        snap = job.progress
        state = ProgressState(
            interrupted=job.control.interrupt_event.is_set(), skipped=job.control.skip_event.is_set(),
            job=job.id, job_count=snap.job_count, job_no=snap.job_no, sampling_step=snap.step,
            sampling_steps=snap.total_steps, job_timestamp=str(int(job.started_at or 0)))
        fraction = min(1.0, 0.01 + snap.fraction) if snap.total_steps else 0.01
        current_image = None
        if not skip_current_image:
            preview = job.control.preview()
            if preview is not None:
                current_image = encode_png_base64(preview, None)
        return ProgressResponse(progress=fraction, eta_relative=snap.eta_seconds() or 0.0, state=state,
                                current_image=current_image, textinfo=snap.text or None)

    @router.post("/interrupt")
    def interrupt() -> dict[str, Any]:
        ctx.queue.interrupt()
        return {}

    @router.post("/skip")
    def skip() -> None:
        ctx.queue.skip()
        return None

    @router.get("/samplers", response_model=list[SamplerItem])
    def samplers() -> list[dict[str, Any]]:
        active = ctx.models.active
        return list_samplers(active.model.prediction_type if active else None)

    @router.get("/schedulers", response_model=list[SchedulerItem])
    def schedulers() -> list[dict[str, Any]]:
        return list_schedules()

    @router.get("/sd-models", response_model=list[SdModelItem])
    def sd_models() -> list[SdModelItem]:
        items = []
        for info in ctx.catalog.list():
            sha = ctx.catalog.sha256(info)
            items.append(SdModelItem(title=ctx.catalog.title(info), model_name=info.model_name,
                                     hash=sha[:10] if sha else None, sha256=sha,
                                     filename=str(info.path), config=None))
        return items

    @router.post("/refresh-checkpoints")
    def refresh_checkpoints() -> None:
        ctx.catalog.refresh()
        return None

    @router.get("/options")
    def get_options() -> dict[str, Any]:
        return _options_view(ctx)

    @router.post("/options")
    def set_options(changes: dict[str, Any] = Body(...)) -> None:
        from modules.settings import SettingsError

        changes = dict(changes)
        checkpoint = changes.pop("sd_model_checkpoint", None)
        if checkpoint is not None:
            _switch_model(ctx, str(checkpoint))
        if changes:
            try:
                ctx.settings.update(changes)
            except SettingsError as exc:
                raise ApiError(400, str(exc), "InvalidSetting") from None
        return None

    @router.post("/png-info", response_model=PngInfoResponse)
    def png_info(payload: PngInfoPayload) -> PngInfoResponse:
        from modules.images.codec import ImageDecodeError

        try:
            image = decode_image_base64(payload.image, max_bytes=_MAX_UPLOAD_BYTES, max_pixels=_MAX_PIXELS)
        except ImageDecodeError as exc:
            raise ApiError(400, str(exc), "InvalidImage") from None
        text = read_infotext(image) or ""
        items = {k: v for k, v in image.info.items() if isinstance(v, str) and k != "parameters"}
        return PngInfoResponse(info=text, items=items, parameters=parse_infotext(text) if text else {})

    return router


_MAX_UPLOAD_BYTES = 50 * 1024 * 1024
_MAX_PIXELS = 64 * 1024 * 1024


def _options_view(ctx: "AppContext") -> dict[str, Any]:
    values = ctx.settings.as_dict()
    active = ctx.models.active
    if active is not None:
        values["sd_model_checkpoint"] = ctx.catalog.title(active.info)
        values["sd_checkpoint_hash"] = active.sha256 or ""
    return values


def _switch_model(ctx: "AppContext", reference: str) -> None:
    from modules.generation import service
    from modules.models.errors import ModelLoadError

    try:
        job = service.submit_model_switch(ctx, reference, owner="sdapi")
    except ModelLoadError as exc:
        raise ApiError(404, str(exc), "ModelNotFound") from None
    except QueueFullError as exc:
        raise ApiError(429, str(exc), "QueueFull") from None
    ctx.queue.wait(job.id)
    if job.state is JobState.FAILED:
        raise ApiError(422 if job.user_error else 500, job.error or "model switch failed", "ModelLoadFailed")


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return f"{where}: {first.get('msg')}" if where else str(first.get("msg"))
    return str(exc)
