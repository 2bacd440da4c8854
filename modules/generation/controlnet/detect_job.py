"""The ``controlnet_detect`` job kind: run a ControlNet preprocessor (canny, depth, ...) over images.

Preprocessors with annotator weights run on the device, so detection is a queued job: the ControlNet
preview in the UI, ``/controlnet/detect`` and the native job API submit a :class:`DetectMapsRequest` and
wait on it, with progress (one step per image) and interrupt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from modules.generation.controlnet.preprocess import PreprocessorError, find_preprocessor
from modules.generation.validation import InvalidRequestError
from modules.images.codec import ImageDecodeError, decode_request_image
from modules.jobs.kinds import JobKind
from modules.jobs.model import Job
from modules.jobs.progress import JobControl

if TYPE_CHECKING:
    from PIL import Image

    from modules.app_context import AppContext

MAX_DETECT_IMAGES = 16


class DetectMapsRequest(BaseModel):
    """Detect the control map of each image with ``module`` (sd-webui-controlnet's names and aliases)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["controlnet_detect"] = "controlnet_detect"
    images: list[str] = Field(..., min_length=1, max_length=MAX_DETECT_IMAGES, description="base64 images")
    module: str = "none"
    processor_res: int = Field(512, ge=-1, le=4096)
    threshold_a: float = Field(-1.0, description="-1: the module's default")
    threshold_b: float = Field(-1.0, description="-1: the module's default")


@dataclass
class DetectMapsResult:
    images: list["Image.Image"] = field(default_factory=list)
    module: str = ""
    interrupted: bool = False


def _decoded(request: DetectMapsRequest) -> list["Image.Image"]:
    images = []
    for index, data in enumerate(request.images):
        try:
            images.append(decode_request_image(data, f"controlnet image {index}"))
        except ImageDecodeError as exc:
            raise InvalidRequestError(str(exc)) from None
    return images


def _precheck(ctx: "AppContext", request: DetectMapsRequest) -> DetectMapsRequest:
    module = find_preprocessor(request.module).name
    _decoded(request)
    return request.model_copy(update={"module": module})


def _run(ctx: "AppContext", job: Job, control: JobControl) -> DetectMapsResult:
    from modules.generation.controlnet.hook import detect_maps  # torch: imported on first use, not at start-up

    request: DetectMapsRequest = job.request
    annotators = ctx.addons.annotators if ctx.addons is not None else None
    images = _decoded(request)
    control.begin(1, len(images), text=f"detecting ({request.module})")
    result = DetectMapsResult(module=request.module)
    for index, image in enumerate(images):
        if control.should_stop:
            result.interrupted = True
            break
        result.images += detect_maps([image], request.module, processor_res=request.processor_res,
                                     threshold_a=request.threshold_a, threshold_b=request.threshold_b,
                                     annotators=annotators)
        control.step(index + 1)
    return result


def _describe(result: Any) -> dict[str, Any] | None:
    if not isinstance(result, DetectMapsResult):
        return None
    return {"images": [{"path": None} for _ in result.images], "module": result.module,
            "interrupted": result.interrupted}


CONTROLNET_DETECT = JobKind(
    name="controlnet_detect", request=DetectMapsRequest, run=_run, precheck=_precheck, describe=_describe,
    summary="Detect ControlNet control maps (canny, depth, ...) of images with a preprocessor.",
    user_errors=(InvalidRequestError, PreprocessorError))

KINDS = (CONTROLNET_DETECT,)
