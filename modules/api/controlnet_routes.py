"""sd-webui-controlnet's API routes: ``/controlnet/version``, ``/controlnet/model_list``,
``/controlnet/module_list`` and ``/controlnet/detect`` (what the webuiapi client and A1111 tools call).

``module_list`` lists the preprocessors usable now (weight-free ones always; annotator ones when their
files are in ``models/annotators``; ``alias_names=true`` gives the UI labels) with the extension's
``module_detail`` sliders, plus an extra ``unavailable`` map naming the missing files of the others. ``detect`` accepts the images as
``controlnet_input_images`` (the extension) or ``controlnet_images`` (the webuiapi client) and answers
``{"images": [base64 PNG, ...], "info": "Success"}``. Detection runs in the request's worker thread, as
in the extension.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from fastapi import APIRouter, Body, Depends
from pydantic import BaseModel, ConfigDict, Field

from modules.api.errors import ApiError, error_responses
from modules.api.security import principal_of
from modules.generation.controlnet.models import ControlNetLibrary, controlnet_dirs
from modules.generation.controlnet.preprocess import (LABELS, PREPROCESSORS, AnnotatorCache, available_modules,
                                                      module_detail)
from modules.generation.validation import InvalidRequestError

if TYPE_CHECKING:
    from modules.app_context import AppContext

#: sd-webui-controlnet's ``external_code.get_api_version()``
API_VERSION = 2
MAX_DETECT_IMAGES = 16


class DetectRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    controlnet_module: str = "none"
    controlnet_input_images: list[str] = Field(default_factory=list, max_length=MAX_DETECT_IMAGES)
    controlnet_images: list[str] = Field(default_factory=list, max_length=MAX_DETECT_IMAGES,
                                         description="the webuiapi client's name for controlnet_input_images")
    controlnet_processor_res: int = Field(512, ge=-1, le=4096)
    controlnet_threshold_a: float = Field(64.0, description="the extension's API default (64); -1: the module's")
    controlnet_threshold_b: float = Field(64.0, description="the extension's API default (64); -1: the module's")
    low_vram: bool = False


class DetectResponse(BaseModel):
    images: list[str]
    info: str


class ModelListResponse(BaseModel):
    model_list: list[str]


class ModuleListResponse(BaseModel):
    module_list: list[str]
    module_detail: dict[str, Any]
    unavailable: dict[str, list[str]] = Field(default_factory=dict,
                                              description="modules whose annotator files are missing")


class VersionResponse(BaseModel):
    version: int


def annotator_dir_for(ctx: "AppContext") -> Path:
    """``<data dir>/models/annotators`` (beside ``models/ControlNet``)."""
    return ctx.paths.controlnet_dir.parent / "annotators"


def controlnet_library_for(ctx: "AppContext") -> ControlNetLibrary:
    """``models/ControlNet`` of the data dir plus the repository's shipped folder."""
    dirs = ctx.paths.controlnet_search_dirs
    return ControlNetLibrary(controlnet_dirs(dirs[0], dirs[1:]))


def build_controlnet_router(ctx: "AppContext", dependencies: Sequence[Any] = (), *,
                            annotators: AnnotatorCache | None = None) -> APIRouter:
    """The ``/controlnet/*`` routes; ``dependencies`` (e.g. ``[Depends(auth)]``) guard every route and
    ``annotators`` is the loaded-detector cache to share with the generation hooks (new when omitted)."""
    router = APIRouter(prefix="/controlnet", tags=["ControlNet (sd-webui-controlnet API)"],
                       dependencies=[d if hasattr(d, "dependency") else Depends(d) for d in dependencies])
    cache = annotators or AnnotatorCache(annotator_dir_for(ctx))

    @router.get("/version", response_model=VersionResponse)
    def version() -> VersionResponse:
        return VersionResponse(version=API_VERSION)

    @router.get("/model_list", response_model=ModelListResponse)
    def model_list(update: bool = True) -> ModelListResponse:
        return ModelListResponse(model_list=controlnet_library_for(ctx).titles())

    @router.get("/module_list", response_model=ModuleListResponse)
    def module_list(alias_names: bool = False) -> ModuleListResponse:
        usable, unavailable = available_modules(cache)
        shown = [LABELS.get(name, name) if alias_names else name for name in usable]
        return ModuleListResponse(module_list=shown,
                                  module_detail={label: module_detail(PREPROCESSORS[name])
                                                 for label, name in zip(shown, usable)},
                                  unavailable=unavailable)

    @router.post("/detect", response_model=DetectResponse, responses=error_responses(422, 429, 507))
    def detect(body: DetectRequest = Body(...), principal: str | None = Depends(principal_of)) -> DetectResponse:
        from modules.api.sdapi_common import finished_result, raise_for_submit_error, sdapi_owner
        from modules.generation.controlnet.detect_job import DetectMapsRequest
        from modules.generation.runners.img2img import encode_request_image
        from modules.jobs.submit import submit_job

        sources = body.controlnet_input_images or body.controlnet_images
        if not sources:
            raise ApiError(422, "send the images to detect in controlnet_input_images", "InvalidRequest")
        request = DetectMapsRequest(images=sources, module=body.controlnet_module,
                                    processor_res=body.controlnet_processor_res,
                                    threshold_a=body.controlnet_threshold_a, threshold_b=body.controlnet_threshold_b)
        try:  # a detection is device work: a job on the queue, like generation
            job = submit_job(ctx, request, owner=sdapi_owner(principal), source="controlnet")
        except InvalidRequestError as exc:
            raise ApiError(422, str(exc), "InvalidRequest") from None
        except Exception as exc:  # noqa: BLE001 - queue full, disk full: mapped to 4xx/507 or re-raised
            raise_for_submit_error(exc)
            raise
        ctx.queue.wait(job.id)
        maps = finished_result(job).images
        return DetectResponse(images=[encode_request_image(m) for m in maps], info="Success")

    return router
