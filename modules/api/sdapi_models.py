"""A1111 ``/sdapi/v1`` payloads and their translation to Atelier's typed requests.

Every field of A1111 v1.10's request models is declared (those Atelier does not use, such as
restore_faces or s_churn, too, so ``parameters`` echoes them as A1111 does); keys A1111 does not know
either (SillyTavern's ``url`` and ``auth``) are dropped as A1111's pydantic 1 models drop them, so a
secret sent in the body is never echoed. Input is coerced as pydantic 1 coerced it
(:mod:`modules.api.pydantic1`), and the requests built here carry ``fit_to_model``: a size or clip
skip the model cannot do exactly is fitted and reported, as A1111 answers them with an image.
Defaults are A1111's *API* defaults (for img2img: ``inpainting_fill=0``, ``inpaint_full_res=True``,
``inpaint_full_res_padding=0``). Legacy spellings are honoured:
``sampler_index``, combined sampler names such as "DPM++ 2M Karras", ``scheduler: "automatic"``
and an ``infotext`` string that fills every field the request did not set explicitly.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from modules.api.pydantic1 import Pydantic1Payload
from modules.backends.token_merging import override_fields
from modules.generation.controlnet.units import units_from_alwayson
from modules.generation.requests import Txt2ImgRequest
from modules.images.infotext import infotext_to_request_fields, parse_infotext

#: A1111 words meaning "no refiner / same checkpoint"
_NO_CHECKPOINT = ("", "None", "Use same checkpoint")


class _SdGenerationPayload(Pydantic1Payload):
    """Fields common to A1111's txt2img and img2img payloads, with A1111's API defaults."""

    model_config = ConfigDict(extra="ignore")

    prompt: str = ""
    negative_prompt: str = ""
    styles: list[str] | None = None
    seed: int = -1
    subseed: int = -1
    subseed_strength: float = 0.0
    seed_resize_from_h: int = -1
    seed_resize_from_w: int = -1
    sampler_name: str | None = None
    sampler_index: str = "Euler"
    scheduler: str | None = None
    batch_size: int = 1
    n_iter: int = 1
    steps: int = 50
    cfg_scale: float = 7.0
    # A1111 fills a missing size with 512x512; Atelier uses the loaded model's native size instead
    # (1024 for SDXL/FLUX, 768 for SD 2.x v, 64 for the embedded default), which is what 512 means for SD 1.5
    width: int | None = None
    height: int | None = None
    denoising_strength: float | None = 0.75
    refiner_checkpoint: str | None = None
    refiner_switch_at: float | None = None
    override_settings: dict[str, Any] | None = None
    override_settings_restore_afterwards: bool = True
    send_images: bool = True
    save_images: bool = False
    infotext: str | None = None
    alwayson_scripts: dict[str, Any] = Field(default_factory=dict)
    script_name: str | None = Field(None, description="a selectable script's title, any case (GET /sdapi/v1/scripts); "
                                                      "an unknown one is refused (422)")
    script_args: list[Any] | dict[str, Any] = Field(
        default_factory=list, description="the script's arguments: A1111's positional list, or an object by argument "
                                          "name (GET /sdapi/v1/script-info lists both)")
    # A1111 fields Atelier does not use (echoed; those with an effect the studio lacks are reported in info)
    restore_faces: bool | None = None
    tiling: bool | None = None
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    eta: float | None = None
    s_min_uncond: float | None = None
    s_churn: float | None = None
    s_tmax: float | None = None
    s_tmin: float | None = None
    s_noise: float | None = None
    disable_extra_networks: bool = False
    comments: dict[str, Any] | None = None
    force_task_id: str | None = None
    # SD.Next's name for clip skip (SillyTavern sends it too); override_settings.CLIP_stop_at_last_layers wins
    clip_skip: int | None = None

    def _common(self, default_clip_skip: int = 1) -> dict[str, Any]:
        """The typed request fields shared by txt2img and img2img (after the infotext is applied)."""
        fields = self._with_infotext()
        overrides = fields.get("override_settings") or {}
        # A1111: the CLIP_stop_at_last_layers setting unless the request overrides it
        clip_skip = _clip_skip(overrides.get("CLIP_stop_at_last_layers", fields.get("clip_skip") or default_clip_skip))
        checkpoint = overrides.get("sd_model_checkpoint") or fields.get("checkpoint")
        common = dict(
            prompt=fields["prompt"], negative_prompt=fields["negative_prompt"],
            styles=fields.get("styles") or [], steps=fields["steps"],
            sampler_name=fields.get("sampler_name") or fields["sampler_index"],
            scheduler=fields.get("scheduler") or "automatic",
            cfg_scale=fields["cfg_scale"], width=fields["width"], height=fields["height"],
            seed=fields["seed"], subseed=fields["subseed"], subseed_strength=fields["subseed_strength"],
            seed_resize_from_w=fields["seed_resize_from_w"], seed_resize_from_h=fields["seed_resize_from_h"],
            batch_size=fields["batch_size"], n_iter=fields["n_iter"], clip_skip=clip_skip,
            checkpoint=checkpoint, save_images=fields["save_images"], fit_to_model=True,
        )
        if overrides.get("sd_vae"):
            common["sd_vae"] = str(overrides["sd_vae"])
        rng = overrides.get("randn_source") or fields.get("randn_source")  # A1111's option, or a pasted RNG
        if rng:
            common["randn_source"] = str(rng)
        units = units_from_alwayson(fields.get("alwayson_scripts"))
        if units:
            common["controlnet_units"] = units
        refiner = fields.get("refiner_checkpoint")
        if refiner not in (None, *_NO_CHECKPOINT):
            common["refiner_checkpoint"] = refiner
            if fields.get("refiner_switch_at") is not None:
                common["refiner_switch_at"] = fields["refiner_switch_at"]
        if fields.get("denoising_strength") is not None:
            common["denoising_strength"] = fields["denoising_strength"]
        return common

    def _with_infotext(self) -> dict[str, Any]:
        fields = self.model_dump()
        if not self.infotext:
            return fields
        parsed = infotext_to_request_fields(parse_infotext(self.infotext))
        parsed.pop("extra", None)
        if parsed.get("clip_skip") is not None and "override_settings" not in self.model_fields_set:
            fields["clip_skip"] = parsed["clip_skip"]
        if parsed.get("checkpoint") and "override_settings" not in self.model_fields_set:
            fields["checkpoint"] = parsed["checkpoint"]
        if parsed.get("randn_source"):
            fields["randn_source"] = parsed["randn_source"]
        for key, value in parsed.items():
            if key in type(self).model_fields and key not in self.model_fields_set and value is not None:
                fields[key] = value
        return fields

    def echo(self, size: tuple[int, int] | None = None) -> dict[str, Any]:
        """A1111's ``parameters``: the request as received (alwayson_scripts as sent); a size left out is
        reported as `size`, the one the job ran at."""
        params = self.model_dump(exclude={"alwayson_scripts"})
        if size is not None:
            params["width"] = size[0] if params["width"] is None else params["width"]
            params["height"] = size[1] if params["height"] is None else params["height"]
        params["alwayson_scripts"] = self.alwayson_scripts
        return params


def _clip_skip(value: Any) -> int:
    """A1111's clip skip: 1 and below mean the last layer; a number in a string or a float is taken as pydantic 1
    and A1111's ``opts`` take it (a value that is no number at all stays for the request model to refuse)."""
    try:
        return max(1, int(float(value)))
    except (TypeError, ValueError):
        return value


class SdTxt2ImgPayload(_SdGenerationPayload):
    """``POST /sdapi/v1/txt2img`` with A1111's API defaults (hires fix included)."""

    enable_hr: bool = False
    hr_scale: float = 2.0
    hr_upscaler: str | None = None
    hr_second_pass_steps: int = 0
    hr_resize_x: int = 0
    hr_resize_y: int = 0
    hr_checkpoint_name: str | None = None
    hr_sampler_name: str | None = None
    hr_scheduler: str | None = None
    hr_prompt: str = ""
    hr_negative_prompt: str = ""
    firstphase_width: int = 0
    firstphase_height: int = 0
    firstpass_image: str | None = None

    def to_request(self, default_clip_skip: int = 1) -> Txt2ImgRequest:
        fields = self._with_infotext()
        hires = dict(enable_hr=fields["enable_hr"], hr_scale=fields["hr_scale"],
                     hr_upscaler=fields.get("hr_upscaler") or "Latent",
                     hr_second_pass_steps=fields["hr_second_pass_steps"], hr_resize_x=fields["hr_resize_x"],
                     hr_resize_y=fields["hr_resize_y"], hr_sampler_name=fields.get("hr_sampler_name"),
                     hr_scheduler=fields.get("hr_scheduler"), hr_prompt=fields["hr_prompt"] or "",
                     hr_negative_prompt=fields["hr_negative_prompt"] or "")
        hr_checkpoint = fields.get("hr_checkpoint_name")
        if fields["enable_hr"] and hr_checkpoint not in (None, *_NO_CHECKPOINT):
            raise ValueError("hr_checkpoint_name: a different checkpoint for the hires pass is not supported; "
                             "leave it empty")
        hires.update(override_fields(fields.get("override_settings")))  # token merging (its ratios)
        return Txt2ImgRequest(**self._common(default_clip_skip), **hires)


class SdImg2ImgPayload(_SdGenerationPayload):
    """``POST /sdapi/v1/img2img`` with A1111's API defaults (not its UI defaults)."""

    init_images: list[str] | None = Field(None, description="base64 images or data URIs")
    mask: str | None = Field(None, description="base64 image or data URI; white = repaint")
    resize_mode: int = 0
    image_cfg_scale: float | None = None
    mask_blur: int | None = None
    mask_blur_x: int = 4
    mask_blur_y: int = 4
    mask_round: bool = True
    inpainting_fill: int = 0
    inpaint_full_res: bool = True
    inpaint_full_res_padding: int = 0
    inpainting_mask_invert: int = 0
    initial_noise_multiplier: float | None = None
    include_init_images: bool = False
    latent_mask: str | None = None
    flux_kontext: bool = Field(False, description="Atelier: FLUX.1 Kontext editing with the init images as reference")

    def to_request(self, default_clip_skip: int = 1) -> Any:  # -> Img2ImgRequest
        from modules.generation.requests import Img2ImgRequest

        fields = self._with_infotext()
        noise = fields.get("initial_noise_multiplier")
        return Img2ImgRequest(
            **self._common(default_clip_skip), init_images=list(fields.get("init_images") or []),
            mask=fields.get("mask"),
            resize_mode=fields["resize_mode"], image_cfg_scale=fields.get("image_cfg_scale"),
            mask_blur=fields.get("mask_blur"), mask_blur_x=fields["mask_blur_x"], mask_blur_y=fields["mask_blur_y"],
            mask_round=fields["mask_round"], inpainting_fill=fields["inpainting_fill"],
            inpaint_full_res=fields["inpaint_full_res"], inpaint_full_res_padding=fields["inpaint_full_res_padding"],
            inpainting_mask_invert=fields["inpainting_mask_invert"],
            initial_noise_multiplier=None if noise in (None, 1, 1.0) else noise,
            include_init_images=fields["include_init_images"], flux_kontext=fields["flux_kontext"],
            **override_fields(fields.get("override_settings"), img2img=True))

    def echo(self, size: tuple[int, int] | None = None) -> dict[str, Any]:
        params = super().echo(size)
        if not self.include_init_images:  # A1111 leaves the images out of the echo
            params["init_images"] = None
            params["mask"] = None
        return params


#: OpenAPI answer of the routes that return JSON ``null`` (A1111 returns nothing; clients call .json())
NULL_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"description": "JSON null", "content": {"application/json": {"schema": {"type": "null"}}}}}


class PngInfoPayload(BaseModel):
    model_config = ConfigDict(extra="ignore")
    image: str = Field(..., description="base64 image or data URI")


class ProgressState(BaseModel):
    skipped: bool = False
    interrupted: bool = False
    stopping_generation: bool = False
    job: str = ""
    job_count: int = 0
    job_timestamp: str = "0"
    job_no: int = 0
    sampling_step: int = 0
    sampling_steps: int = 0


class ProgressResponse(BaseModel):
    progress: float
    eta_relative: float
    state: ProgressState
    current_image: str | None = None
    textinfo: str | None = None


class SdModelItem(BaseModel):
    title: str
    model_name: str
    hash: str | None
    sha256: str | None
    filename: str
    config: str | None = None


class SamplerItem(BaseModel):
    name: str
    aliases: list[str]
    options: dict[str, str]


class SchedulerItem(BaseModel):
    name: str
    label: str
    aliases: list[str] | None = None
    default_rho: float = -1
    need_inner_model: bool = False


class TextToImageResponse(BaseModel):
    images: list[str]
    parameters: dict[str, Any]
    info: str


class PngInfoResponse(BaseModel):
    info: str
    items: dict[str, Any]
    parameters: dict[str, Any]
