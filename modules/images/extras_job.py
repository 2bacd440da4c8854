"""The ``extras`` job kind: A1111's Extras upscale (one image, a batch of uploads, or a batch from a
server folder), on the queue like all device work.

An upscaler model (ESRGAN and kin) runs on the device, so Extras is a queued job: the UI's Extras tab,
``/sdapi/v1/extra-single-image``, ``/sdapi/v1/extra-batch-images`` and the native job API all submit
an :class:`ExtrasRequest` and wait on it, with progress (one step per image), interrupt and fairness.
The precheck decodes every image and works out each result's size, so a request over the limits is
refused before it is queued.

"Batch from Directory" (``input_dir``, optional ``output_dir``) reads a server folder: accepted only under
the data dir or an ``--allowed-dir`` root (:mod:`modules.folder_access`). A file of the folder that cannot
be read or upscaled is recorded as failed with its reason and the batch goes on; the result carries a
:class:`BatchSummary`. With ``output_dir`` each result is ``<output_dir>/<input stem>.png``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from modules.folder_access import FolderNotAllowed, image_files, resolve_folder, roots_of

from modules.images.codec import ImageDecodeError, decode_request_image, read_infotext
from modules.images.saving import save_numbered_png
from modules.images.upscale import (UpscaleError, UpscaleParams, infotext_of, planned_size,
                                    postprocess_upscale)
from modules.jobs.batch_summary import BatchSummary
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
    images: list[str] = Field(default_factory=list, max_length=64, description="base64 images (or data URIs)")
    names: list[str] = Field(default_factory=list, description="what each image is called in messages")
    input_dir: str | None = Field(None, description="Batch from Directory: a server folder of images (under the "
                                                    "data dir or an --allowed-dir root), instead of images; the "
                                                    "studio's page only, refused to API callers")
    output_dir: str | None = Field(None, description="save each result as <output_dir>/<input name>.png (a folder "
                                                     "under an allowed root); None: outputs/extras-images")
    resize_mode: int = Field(0, description="0: scale by upscaling_resize; 1: scale to width x height")
    upscaling_resize: float = 2.0
    upscaling_resize_w: int = 512
    upscaling_resize_h: int = 512
    upscaling_crop: bool = True
    upscaler_1: str = "None"
    upscaler_2: str = "None"
    extras_upscaler_2_visibility: float = 0.0
    save_images: bool = Field(False, description="save each result to outputs/extras-images")

    @model_validator(mode="after")
    def _one_source(self) -> "ExtrasRequest":
        if bool(self.images) == bool(self.input_dir and self.input_dir.strip()):
            raise ValueError("extras needs images or an input folder (input_dir): exactly one of them")
        return self

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
    names: list[str] = field(default_factory=list)
    batch: BatchSummary = field(default_factory=BatchSummary)


def decode(request: ExtrasRequest, index: int) -> "Image.Image":
    try:
        return decode_request_image(request.images[index], request.name_of(index))
    except ImageDecodeError as exc:
        raise ExtrasImageError(str(exc)) from None


@dataclass(frozen=True)
class _Folders:
    input_dir: Path | None
    output_dir: Path | None


def _folders(ctx: "AppContext", request: ExtrasRequest, *, create_output: bool) -> _Folders:
    roots = roots_of(ctx)
    try:
        input_dir = resolve_folder(request.input_dir, roots, what="input folder") if request.input_dir else None
        output_dir = (resolve_folder(request.output_dir, roots, what="output folder", must_exist=False,
                                     create=create_output) if request.output_dir else None)
    except FolderNotAllowed as exc:
        raise UpscaleError(str(exc)) from None
    if input_dir is not None and input_dir == output_dir:
        raise UpscaleError("the output folder must differ from the input folder")
    return _Folders(input_dir, output_dir)


def _folder_files(ctx: "AppContext", request: ExtrasRequest, folders: _Folders) -> list[Path]:
    files = image_files(folders.input_dir, roots_of(ctx)) if folders.input_dir is not None else []
    if folders.input_dir is not None and not files:
        raise UpscaleError(f"no images in the input folder {request.input_dir!r}")
    if len(files) > 10000:
        raise UpscaleError(f"{len(files)} images in the input folder: split it into folders of 10000 or fewer")
    return files


def _open_file(path: Path) -> "Image.Image":
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except Image.UnidentifiedImageError:
        raise ExtrasImageError("not an image file") from None
    except (OSError, Image.DecompressionBombError) as exc:
        raise ExtrasImageError(f"cannot read it ({type(exc).__name__})") from None


def _precheck(ctx: "AppContext", request: ExtrasRequest) -> None:
    params = request.params()
    folders = _folders(ctx, request, create_output=False)
    _folder_files(ctx, request, folders)
    for index in range(len(request.images)):
        image = decode(request, index)
        planned_size(image.width, image.height, params, ctx.upscalers)


def _run(ctx: "AppContext", job: Job, control: JobControl) -> ExtrasResult:
    request: ExtrasRequest = job.request
    params = request.params()
    if job.source == "api" and (request.input_dir or request.output_dir):
        # server folders are for the studio's own page and scripts; API callers send their images
        raise UpscaleError("input_dir and output_dir are not available through the API: send the images instead")
    folders = _folders(ctx, request, create_output=True)
    files = _folder_files(ctx, request, folders)
    count = len(files) or len(request.images)
    control.begin(1, count, text="upscaling" if count == 1 else f"upscaling a batch of {count}")
    result = ExtrasResult(images=[], infotext="", source_infotexts=[], batch=BatchSummary(total=count))
    for index in range(count):
        if control.should_stop:
            result.interrupted = result.batch.interrupted = True
            break
        name = files[index].name if files else request.name_of(index)
        control.progress.text = f"upscaling {index + 1}/{count}" if count > 1 else "upscaling"
        try:
            source = _open_file(files[index]) if files else decode(request, index)
            image, info = postprocess_upscale(source, params, ctx.upscalers)
        except UpscaleError as exc:
            if not files:
                raise  # an uploaded image the precheck let through: the request itself is wrong
            result.batch.fail(name, str(exc))
            control.step(index + 1)
            continue
        result.infotext = infotext_of(info)
        source_text = read_infotext(source) or ""
        path = None
        texts = {"parameters": source_text, "postprocessing": result.infotext}
        if folders.output_dir is not None:
            path = _save_as(image, folders.output_dir / f"{Path(name).stem or 'image'}.png", texts)
        elif request.save_images or job.keep_outputs:
            path = save_numbered_png(image, folder=ctx.paths.output_dir("extras"), texts=texts)
        result.images.append(image)
        result.source_infotexts.append(source_text)
        result.paths.append(path)
        result.names.append(name)
        result.batch.done += 1
        control.step(index + 1)
    return result


def _save_as(image: "Image.Image", path: Path, texts: dict[str, str]) -> Path:
    """Write ``image`` to ``path`` atomically (a temporary file renamed), with its PNG texts."""
    import os

    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    for key, value in texts.items():
        if value:
            info.add_text(key, value)
    partial = path.with_name(f".{path.name}.partial")
    image.save(partial, format="PNG", pnginfo=info)
    os.replace(partial, path)
    return path


def _describe(result: Any) -> dict[str, Any] | None:
    if not isinstance(result, ExtrasResult):
        return None
    images = [{"path": str(path) if path else None, "infotext": text}
              for path, text in zip(result.paths, result.source_infotexts)]
    return {"images": images, "postprocessing": result.infotext, "interrupted": result.interrupted,
            "batch": result.batch.as_dict()}


EXTRAS = JobKind(
    name="extras", request=ExtrasRequest, run=_run, precheck=_precheck, describe=_describe, keeps_outputs=True,
    summary="Upscale images as A1111's Extras tab does (one step per image): uploaded images, or a folder under the "
            "data dir or an --allowed-dir root; saved to outputs/extras-images or output_dir.",
    user_errors=(UpscaleError,))

KINDS = (EXTRAS,)
