"""The ``interrogate`` job kind: describe an image (a caption, or tags) with the interrogation classifier.

The classifier is a model and runs on the device, so interrogation is a queued job like generation:
``/sdapi/v1/interrogate``, the img2img tab's Interrogate buttons and the native job API submit an
:class:`InterrogateRequest` and wait on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from modules.images.codec import ImageDecodeError, decode_request_image
from modules.jobs.kinds import JobKind
from modules.jobs.model import Job
from modules.jobs.progress import JobControl
from modules.understanding.interrogate import (CAPTION_MODELS, TAG_MODELS, InterrogatorMissing,
                                               UnknownInterrogateModel)

if TYPE_CHECKING:
    from PIL import Image

    from modules.app_context import AppContext

class InterrogateImageError(ValueError):
    """The image of the request cannot be decoded."""


class InterrogateRequest(BaseModel):
    """Describe one image; ``model`` as A1111 names it ("clip" for a caption, "deepdanbooru" for tags)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["interrogate"] = "interrogate"
    image: str = Field(..., description="base64 image (or data URI)")
    model: str = Field("clip", description=f"one of {', '.join(CAPTION_MODELS + TAG_MODELS)}")


@dataclass(frozen=True)
class InterrogateResult:
    caption: str
    model: str


def _decode(request: InterrogateRequest) -> "Image.Image":
    try:
        return decode_request_image(request.image, "image")
    except ImageDecodeError as exc:
        raise InterrogateImageError(str(exc)) from None


def _precheck(ctx: "AppContext", request: InterrogateRequest) -> None:
    _decode(request)  # a bad image is named first, as A1111 decodes before it interrogates
    name = (request.model or "clip").strip().lower()
    if name not in CAPTION_MODELS + TAG_MODELS:
        raise UnknownInterrogateModel(f"Model not found: {request.model!r}; this server interrogates with "
                                      f"{', '.join(CAPTION_MODELS + TAG_MODELS)}")
    if ctx.interrogator.find() is None:
        ctx.interrogator.missing()


def _run(ctx: "AppContext", job: Job, control: JobControl) -> InterrogateResult:
    request: InterrogateRequest = job.request
    control.begin(1, 1, text="interrogating")
    caption = ctx.interrogator.interrogate(_decode(request), request.model)
    control.step(1)
    return InterrogateResult(caption=caption, model=request.model)


def _describe(result: Any) -> dict[str, Any] | None:
    if not isinstance(result, InterrogateResult):
        return None
    return {"caption": result.caption, "model": result.model}


INTERROGATE = JobKind(
    name="interrogate", request=InterrogateRequest, run=_run, precheck=_precheck, describe=_describe,
    summary="Describe an image with the interrogation classifier: a caption (model clip) or tags (deepdanbooru).",
    user_errors=(InterrogatorMissing, UnknownInterrogateModel, InterrogateImageError))

KINDS = (INTERROGATE,)


def interrogate_request(ctx: "AppContext", image: str, model: str | None) -> BaseModel:
    """What ``/sdapi/v1/interrogate`` queues for A1111's ``model`` over the chosen understanding backend
    (Settings → ``understanding_backend``): the offline default is this ``interrogate`` kind (the shapes
    classifier); any other backend gets an ``understand_caption`` request, a detailed caption for ``clip``
    (and ``atelier-shapes-vit``), tags for ``deepdanbooru``. Both results carry ``caption``."""
    from modules.understanding.tasks.caption import CaptionRequest
    from modules.understanding.tasks.common import chosen_backend

    backend = chosen_backend(ctx, None)
    if backend == "default":
        return InterrogateRequest(image=image, model=model or "clip")  # its precheck names a bad image first
    name = (model or "clip").strip().lower()
    if name not in CAPTION_MODELS + TAG_MODELS:
        raise UnknownInterrogateModel(f"Model not found: {model!r}; this server interrogates with "
                                      f"{', '.join(CAPTION_MODELS + TAG_MODELS)}")
    return CaptionRequest(image=image, detail="tags" if name in TAG_MODELS else "detailed", backend=backend)
