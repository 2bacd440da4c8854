"""A1111 ``/sdapi/v1`` payloads and their translation to Atelier's typed requests.

A1111 clients send many keys Atelier does not use (restore_faces, s_churn, ...); like A1111's
own pydantic models these are accepted and ignored. Legacy spellings are honoured:
``sampler_index``, combined sampler names such as "DPM++ 2M Karras", ``scheduler: "automatic"``
and an ``infotext`` string that fills every field the request did not set explicitly.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from modules.generation.requests import Txt2ImgRequest
from modules.images.infotext import infotext_to_request_fields, parse_infotext


class SdTxt2ImgPayload(BaseModel):
    """``POST /sdapi/v1/txt2img`` with A1111's API defaults."""

    model_config = ConfigDict(extra="allow")

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
    width: int = 512
    height: int = 512
    override_settings: dict[str, Any] | None = None
    override_settings_restore_afterwards: bool = True
    send_images: bool = True
    save_images: bool = False
    infotext: str | None = None
    alwayson_scripts: dict[str, Any] = Field(default_factory=dict)
    script_name: str | None = None
    script_args: list[Any] = Field(default_factory=list)

    def to_request(self) -> Txt2ImgRequest:
        fields = self._with_infotext()
        overrides = fields.get("override_settings") or {}
        clip_skip = overrides.get("CLIP_stop_at_last_layers", fields.get("clip_skip", 1))
        checkpoint = overrides.get("sd_model_checkpoint") or fields.get("checkpoint")
        scheduler = fields.get("scheduler") or "automatic"
        return Txt2ImgRequest(
            prompt=fields["prompt"], negative_prompt=fields["negative_prompt"],
            styles=fields.get("styles") or [], steps=fields["steps"],
            sampler_name=fields.get("sampler_name") or fields["sampler_index"], scheduler=scheduler,
            cfg_scale=fields["cfg_scale"], width=fields["width"], height=fields["height"],
            seed=fields["seed"], subseed=fields["subseed"], subseed_strength=fields["subseed_strength"],
            seed_resize_from_w=fields["seed_resize_from_w"], seed_resize_from_h=fields["seed_resize_from_h"],
            batch_size=fields["batch_size"], n_iter=fields["n_iter"], clip_skip=int(clip_skip),
            checkpoint=checkpoint, save_images=fields["save_images"],
        )

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
        for key, value in parsed.items():
            if key in type(self).model_fields and key not in self.model_fields_set and value is not None:
                fields[key] = value
        return fields


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
