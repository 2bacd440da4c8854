"""The ``flux_remote`` job kind: a txt2img (FLUX.1 Pro / Pro Ultra) or Kontext edit (Kontext Pro) request sent
to Black Forest Labs' API on the ``remote`` lane, so it never waits for (or holds up) the local device.

It carries the studio's own typed request (:class:`~modules.generation.requests.Txt2ImgRequest` or
:class:`~modules.generation.requests.Img2ImgRequest`); every field the provider cannot honour that the
request sets (a sampler, a negative prompt, LoRA, hires fix, ControlNet, scripts...) is refused by name. The
images are saved like the studio's own, with their infotext (the provider, its request id and its cost where
it reports one). The key comes from ``BFL_API_KEY`` in the environment; ``--offline`` refuses every request.
"""

from __future__ import annotations

import io
import math
import os
import random
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from modules.generation.requests import Img2ImgRequest, Txt2ImgRequest
from modules.generation.validation import InvalidRequestError
from modules.jobs.kinds import JobKind
from modules.providers.bfl import ENDPOINTS, ProviderError

if TYPE_CHECKING:
    from modules.app_context import AppContext
    from modules.jobs.model import Job
    from modules.jobs.progress import JobControl

REMOTE_LANE = "remote"
#: request fields the provider takes (the rest must be left at their defaults)
TXT2IMG_FIELDS = {"kind", "prompt", "styles", "width", "height", "seed", "n_iter", "batch_size", "save_images"}
KONTEXT_FIELDS = TXT2IMG_FIELDS | {"init_images", "flux_kontext", "resize_mode"}
PRO_V1_FIELDS = {"steps", "distilled_cfg_scale"}  # FLUX.1 Pro (v1) takes steps and guidance


class RemoteFluxRequest(BaseModel):
    """Generate with Black Forest Labs' FLUX.1 Pro models through their API."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["flux_remote"] = "flux_remote"
    model: Literal["flux-pro-1.1", "flux-pro-1.1-ultra", "flux-pro", "flux-kontext-pro"] = "flux-pro-1.1"
    region: Literal["global", "eu", "us"] = Field("global", description="the API endpoint (global, EU or US)")
    safety_tolerance: int = Field(2, ge=0, le=6, description="0 strictest ... 6 least strict (the provider's)")
    prompt_upsampling: bool = Field(False, description="let the provider rewrite the prompt")
    output_format: Literal["png", "jpeg"] = "png"
    request: Union[Txt2ImgRequest, Img2ImgRequest] = Field(..., discriminator="kind")


def _endpoint(req: RemoteFluxRequest) -> str:
    return os.environ.get("BFL_API_ENDPOINT") or ENDPOINTS[req.region]


def check(req: RemoteFluxRequest) -> None:
    inner = req.request
    kontext = req.model == "flux-kontext-pro"
    if kontext != isinstance(inner, Img2ImgRequest):
        raise InvalidRequestError(f"{req.model} takes {'an img2img request with one image' if kontext else 'a txt2img request'}")
    allowed = (KONTEXT_FIELDS if kontext else TXT2IMG_FIELDS) | (PRO_V1_FIELDS if req.model == "flux-pro" else set())
    defaults = type(inner)()
    if kontext:
        defaults = Img2ImgRequest(init_images=inner.init_images)
    unhonoured = sorted(name for name in inner.model_fields_set - allowed
                        if getattr(inner, name) != getattr(defaults, name))
    if unhonoured:
        raise InvalidRequestError(f"{req.model} through Black Forest Labs' API cannot honour: {', '.join(unhonoured)}; "
                                  "leave them out, or generate locally")
    if "<" in inner.prompt and ":" in inner.prompt and any(tag in inner.prompt.lower() for tag in ("<lora:", "<lyco:")):
        raise InvalidRequestError("LoRA tags cannot be sent to a remote provider: remove them or generate locally")
    if kontext and len(inner.init_images) != 1:
        raise InvalidRequestError("Kontext Pro edits one image: send exactly one init image")
    if req.model in ("flux-pro-1.1", "flux-pro"):
        for name in ("width", "height"):
            value = getattr(inner, name) or 1024
            if value % 32 or not 256 <= value <= 1440:
                raise InvalidRequestError(f"{name} {value}: {req.model} takes multiples of 32 from 256 to 1440")


def precheck(ctx: "AppContext", req: RemoteFluxRequest) -> None:
    if ctx.flags.offline:
        raise ProviderError("this studio runs with --offline: remote providers are off")
    if not os.environ.get("BFL_API_KEY"):
        raise ProviderError("no Black Forest Labs API key: start the studio with BFL_API_KEY set in its environment")
    check(req)


def _aspect(width: int, height: int) -> str:
    divisor = math.gcd(width, height)
    return f"{width // divisor}:{height // divisor}"


def _body(req: RemoteFluxRequest, prompt: str, seed: int) -> dict[str, Any]:
    inner = req.request
    width, height = inner.width or 1024, inner.height or 1024
    body: dict[str, Any] = {"prompt": prompt, "seed": seed, "safety_tolerance": req.safety_tolerance,
                            "output_format": req.output_format}
    if req.model in ("flux-pro-1.1", "flux-pro"):
        body.update(width=width, height=height, prompt_upsampling=req.prompt_upsampling)
        if req.model == "flux-pro":
            body.update(steps=inner.steps, guidance=inner.distilled_cfg_scale)
    else:
        body["aspect_ratio"] = _aspect(width, height)
        if req.model == "flux-kontext-pro":
            body.update(input_image=inner.init_images[0], prompt_upsampling=req.prompt_upsampling)
    return body


def run(ctx: "AppContext", job: "Job", control: "JobControl") -> Any:
    from PIL import Image

    from modules.generation.results import GenerationResult, record_image
    from modules.generation.sampling.seeds import fix_seed
    from modules.providers.bfl import generate

    req: RemoteFluxRequest = job.request
    check(req)
    inner = req.request
    prompt = inner.prompt
    if inner.styles and ctx.styles is not None:
        prompt, negative = ctx.styles.apply_styles(prompt, "", inner.styles)
        if negative.strip():
            raise InvalidRequestError("a chosen style adds a negative prompt, which Black Forest Labs' API cannot "
                                      "honour: pick styles without one")
    count = inner.n_iter * inner.batch_size
    seed = fix_seed(inner.seed, random.Random())
    tab = "img2img" if isinstance(inner, Img2ImgRequest) else "txt2img"
    from modules.generation.job_kinds import output_options

    output = replace(output_options(ctx, job, tab),  # saved as the inner request asks, as a local job is
                     save=job.keep_outputs or (inner.save_images and ctx.settings.current.samples_save))
    result = GenerationResult(width=inner.width or 1024, height=inner.height or 1024, sampler_name="",
                              schedule_label="", model_name=req.model, job_timestamp=time.strftime("%Y%m%d%H%M%S"))
    started = time.perf_counter()
    control.begin(count, 100, text=f"{req.model} via Black Forest Labs")
    key = os.environ.get("BFL_API_KEY", "")
    for index in range(count):
        if control.should_stop:
            result.interrupted = True
            break
        control.begin_batch(index)

        def progress(fraction: float | None, status: str) -> None:
            if fraction is not None:
                control.step(int(max(0.0, min(1.0, fraction)) * 100))
            control.progress.text = f"{req.model}: {status or 'waiting'} ({index + 1}/{count})"

        made = generate(_endpoint(req), key, req.model, _body(req, prompt, seed + index),
                        should_stop=lambda: control.should_stop, on_progress=progress)
        if made is None:
            result.interrupted = True
            break
        with Image.open(io.BytesIO(made.image)) as opened:
            image = opened.convert("RGB")
        params: dict[str, Any] = {"Seed": seed + index, "Size": f"{image.width}x{image.height}", "Model": req.model,
                                  "Provider": "Black Forest Labs", "Provider request": made.request_id}
        if made.cost is not None:
            params["Provider cost"] = made.cost
        record_image(result, image, seed=seed + index, subseed=-1, prompt=prompt, negative="", params=params,
                     output=output)
        control.step(100)
    result.seconds = time.perf_counter() - started
    return result


def _describe(result: Any) -> dict[str, Any] | None:
    from modules.generation.job_kinds import describe_generation

    return describe_generation(result)


FLUX_REMOTE = JobKind(
    name="flux_remote", request=RemoteFluxRequest, run=run, precheck=precheck, describe=_describe,
    summary="FLUX.1 Pro / Pro Ultra / Kontext Pro through Black Forest Labs' API (BFL_API_KEY), on its own lane.",
    keeps_outputs=True, user_errors=(ProviderError, InvalidRequestError), lane=REMOTE_LANE)

KINDS = (FLUX_REMOTE,)
