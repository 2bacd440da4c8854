"""A1111 ``/sdapi/v1`` shapes for the listing, extras, interrogate and system routes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from modules.api.pydantic1 import Pydantic1Payload


class UpscalerItem(BaseModel):
    name: str
    model_name: str | None = None
    model_path: str | None = None
    model_url: str | None = None
    scale: float | None = None


class LatentUpscaleModeItem(BaseModel):
    name: str


class SdVaeItem(BaseModel):
    model_name: str
    filename: str


class HypernetworkItem(BaseModel):
    name: str
    path: str | None = None


class FaceRestorerItem(BaseModel):
    name: str
    cmd_dir: str | None = None


class RealesrganItem(BaseModel):
    name: str
    path: str | None = None
    scale: int | None = None


class PromptStyleItem(BaseModel):
    name: str
    prompt: str | None = None
    negative_prompt: str | None = None


class EmbeddingItem(BaseModel):
    step: int | None = None
    sd_checkpoint: str | None = None
    sd_checkpoint_name: str | None = None
    shape: int | None = None
    vectors: int | None = None


class EmbeddingsResponse(BaseModel):
    loaded: dict[str, EmbeddingItem] = Field(default_factory=dict, description="embeddings in use")
    skipped: dict[str, EmbeddingItem] = Field(default_factory=dict,
                                              description="files found but not used (textual inversion is not supported yet)")


class LoraItem(BaseModel):
    name: str
    alias: str
    path: str
    metadata: dict[str, Any] = Field(default_factory=dict)


class ScriptsList(BaseModel):
    txt2img: list[str] = Field(default_factory=list)
    img2img: list[str] = Field(default_factory=list)


class ScriptArgItem(BaseModel):
    """A1111's ``ScriptArg``: one argument of a script (``name``: Atelier, the argument's name)."""

    label: str | None = None
    value: Any | None = None
    minimum: Any | None = None
    maximum: Any | None = None
    step: Any | None = None
    choices: list[str] | None = None
    name: str | None = Field(None, description="Atelier: the argument's name in the by-name form of script_args")


class ScriptInfoItem(BaseModel):
    """A1111's ``ScriptInfo``: one script on one tab; ``args`` in positional (``script_args``) order."""

    name: str | None = Field(None, description="the script's title, lower-case")
    is_alwayson: bool | None = None
    is_img2img: bool | None = None
    args: list[ScriptArgItem] = Field(default_factory=list)


class MemoryResponse(BaseModel):
    ram: dict[str, Any] = Field(..., description="free, used, total (bytes)")
    cuda: dict[str, Any] = Field(..., description="system/active/allocated/reserved/inactive/events, or an error")
    models: dict[str, Any] | None = Field(None, description="Atelier: the loaded model slots (name, bytes, last_used; "
                                          "least recently used first), the bytes they use and their budget")
    cluster: list[dict[str, Any]] | None = Field(None, description="Atelier with --ray: each Ray actor's device, "
                                                 "loaded models and current job (as GET /api/v1/cluster)")
    device: str | None = Field(None, description="Atelier: the device and dtype models run on (CUDA, ROCm, MPS, XPU "
                                                 "or CPU; null until torch is loaded)")
    memory_mode: str | None = Field(None, description="Atelier: the memory mode in force (memory_mode setting, "
                                                      "--medvram/--lowvram) and its switches")


class ExtrasBase(Pydantic1Payload):
    """``ExtrasBaseRequest``: A1111's field names and API defaults (input coerced as A1111's pydantic 1 did)."""

    model_config = ConfigDict(extra="ignore")

    resize_mode: int = Field(0, description="0: scale by upscaling_resize; 1: to upscaling_resize_w x _h")
    show_extras_results: bool = True
    gfpgan_visibility: float = Field(0.0, ge=0.0, le=1.0)
    codeformer_visibility: float = Field(0.0, ge=0.0, le=1.0)
    codeformer_weight: float = Field(0.0, ge=0.0, le=1.0)
    upscaling_resize: float = Field(2.0, description="scale factor, above 0 and at most 8")
    upscaling_resize_w: int = Field(512, ge=1, le=16384)
    upscaling_resize_h: int = Field(512, ge=1, le=16384)
    upscaling_crop: bool = True
    upscaler_1: str | None = "None"
    upscaler_2: str | None = "None"
    extras_upscaler_2_visibility: float = Field(0.0, ge=0.0, le=1.0)
    upscale_first: bool = Field(False, description="accepted and ignored, as in A1111 1.10")


class ExtrasSingleImagePayload(ExtrasBase):
    image: str = Field(..., description="base64 image or data URI")


class ExtrasImageItem(BaseModel):
    model_config = ConfigDict(extra="ignore")
    data: str = Field(..., description="base64 image or data URI")
    name: str = ""


class ExtrasBatchImagesPayload(ExtrasBase):
    imageList: list[ExtrasImageItem] = Field(..., max_length=256)  # noqa: N815 - A1111's spelling


class ExtrasSingleImageResponse(BaseModel):
    image: str | None = Field(None, description="raw base64 PNG")
    html_info: str = ""


class ExtrasBatchImagesResponse(BaseModel):
    images: list[str] = Field(default_factory=list, description="raw base64 PNGs")
    html_info: str = ""


class InterrogatePayload(Pydantic1Payload):
    model_config = ConfigDict(extra="ignore")
    image: str = Field(..., description="base64 image or data URI")
    model: str = Field("clip", description="clip (a caption), deepdanbooru (tags) or atelier-shapes-vit")


class InterrogateResponse(BaseModel):
    caption: str
