"""The ``extras`` job kind: A1111's Extras upscale (one image or a batch), on the queue like all device work.

An upscaler model (ESRGAN and kin) runs on the device, so Extras is a queued job: the UI's Extras tab,
``/sdapi/v1/extra-single-image``, ``/sdapi/v1/extra-batch-images`` and the native job API all submit
an :class:`ExtrasRequest` and wait on it, with progress (one step per image), interrupt and fairness.
The precheck decodes every image and works out each result's size, so a request over the limits is
refused before it is queued.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from modules.images.codec import ImageDecodeError, decode_request_image, read_infotext
from modules.images.saving import save_numbered_png
from modules.images.upscale import (UpscaleError, UpscaleParams, infotext_of, planned_size,
                                    postprocess_upscale)
from modules.jobs.kinds import JobKind
from modules.jobs.model import Job
from modules.jobs.progress import JobControl

if TYPE_CHECKING:
    from PIL import Image

    from modules.app_context import AppContext

class ExtrasImageError(UpscaleError):
    """An image of the request cannot be decoded (the message names which)."""


class ExtrasRequest(BaseModel):
    """Upscale images as A1111's Extras tab does (A1111's field names)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["extras"] = "extras"
    images: list[str] = Field(..., min_length=1, max_length=64, description="base64 images (or data URIs)")
    names: list[str] = Field(default_factory=list, description="what each image is called in messages")
    resize_mode: int = Field(0, description="0: scale by upscaling_resize; 1: scale to width x height")
    upscaling_resize: float = 2.0
    upscaling_resize_w: int = 512
    upscaling_resize_h: int = 512
    upscaling_crop: bool = True
    upscaler_1: str = "None"
    upscaler_2: str = "None"
    extras_upscaler_2_visibility: float = 0.0
    save_images: bool = Field(False, description="save each result to outputs/extras-images")

    def params(self) -> UpscaleParams:
        return UpscaleParams(resize_mode=self.resize_mode, upscaling_resize=self.upscaling_resize,
                             upscaling_resize_w=self.upscaling_resize_w, upscaling_resize_h=self.upscaling_resize_h,
                             upscaling_crop=self.upscaling_crop, upscaler_1=self.upscaler_1 or "None",
                             upscaler_2=self.upscaler_2 or "None",
                             extras_upscaler_2_visibility=self.extras_upscaler_2_visibility)

    def name_of(self, index: int) -> str:
        return self.names[index] if index < len(self.names) else f"image {index + 1}"


@dataclass
class ExtrasResult:
    """The upscaled images, the postprocessing infotext and where each was saved (None: not saved)."""

    images: list["Image.Image"]
    infotext: str
    source_infotexts: list[str]
    paths: list[Path | None] = field(default_factory=list)
    interrupted: bool = False


def decode(request: ExtrasRequest, index: int) -> "Image.Image":
    try:
        return decode_request_image(request.images[index], request.name_of(index))
    except ImageDecodeError as exc:
        raise ExtrasImageError(str(exc)) from None


def _precheck(ctx: "AppContext", request: ExtrasRequest) -> None:
    params = request.params()
    for index in range(len(request.images)):
        image = decode(request, index)
        planned_size(image.width, image.height, params, ctx.upscalers)


def _run(ctx: "AppContext", job: Job, control: JobControl) -> ExtrasResult:
    request: ExtrasRequest = job.request
    params = request.params()
    control.begin(1, len(request.images), text="upscaling")
    result = ExtrasResult(images=[], infotext="", source_infotexts=[])
    for index in range(len(request.images)):
        if control.should_stop:
            result.interrupted = True
            break
        source = decode(request, index)
        image, info = postprocess_upscale(source, params, ctx.upscalers)
        result.infotext = infotext_of(info)
        source_text = read_infotext(source) or ""
        path = None
        if request.save_images or job.keep_outputs:
            path = save_numbered_png(image, folder=ctx.paths.output_dir("extras"),
                                     texts={"parameters": source_text, "postprocessing": result.infotext})
        result.images.append(image)
        result.source_infotexts.append(source_text)
        result.paths.append(path)
        control.step(index + 1)
    return result


def _describe(result: Any) -> dict[str, Any] | None:
    if not isinstance(result, ExtrasResult):
        return None
    images = [{"path": str(path) if path else None, "infotext": text}
              for path, text in zip(result.paths, result.source_infotexts)]
    return {"images": images, "postprocessing": result.infotext, "interrupted": result.interrupted}


EXTRAS = JobKind(
    name="extras", request=ExtrasRequest, run=_run, precheck=_precheck, describe=_describe, keeps_outputs=True,
    summary="Upscale images as A1111's Extras tab does (one step per image); saved to outputs/extras-images.",
    user_errors=(UpscaleError,))

KINDS = (EXTRAS,)
