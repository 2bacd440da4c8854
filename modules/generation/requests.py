"""Typed requests, one per job kind, shared by the UI, the REST APIs, scripts and the queue.

These models validate what can be validated without a model loaded (ranges, names);
checks against the loaded model family (size multiple, limits) happen in
:mod:`modules.generation.validation` just before the job runs.

Field names are A1111's (``/sdapi/v1/txt2img`` and ``/sdapi/v1/img2img``), so translating an A1111
payload is a rename-free copy. Where A1111's UI and API defaults differ, these models carry the
**UI** defaults (``inpainting_fill=1`` "original", ``inpaint_full_res=False`` "Whole picture",
``inpaint_full_res_padding=32``, hires ``denoising_strength=0.7``); the A1111 API layer fills in
the API defaults itself. Images travel as base64 PNG strings so a request stays JSON-serialisable
for the persistent queue (:func:`modules.generation.runners.img2img.decode_request_image` decodes them).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from modules.generation.controlnet.units import ControlNetUnit
from modules.scripts.requests import ScriptCall


# A1111's UI default (its first listed sampler). On the embedded model, 16 seeds side by side, it draws shape and
# colour right 76% of the time against Euler a's 69% (docs/benchmarks.md). The A1111 API layer keeps A1111's API
# default (sampler_index "Euler").
DEFAULT_SAMPLER = "DPM++ 2M"


class GenerationRequest(BaseModel):
    """Fields common to every image-generation job (A1111 names)."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field("", max_length=20000)
    negative_prompt: str = Field("", max_length=20000)
    styles: list[str] = Field(default_factory=list)
    steps: int = Field(20, ge=1, le=150)
    sampler_name: str = DEFAULT_SAMPLER
    scheduler: str = "automatic"
    cfg_scale: float = Field(7.0, ge=0.0, le=30.0)
    width: int | None = Field(None, ge=8, le=4096, description="None: the model's native size")
    height: int | None = Field(None, ge=8, le=4096, description="None: the model's native size")
    seed: int = Field(-1, ge=-1, le=2**32 - 1)
    subseed: int = Field(-1, ge=-1, le=2**32 - 1)
    subseed_strength: float = Field(0.0, ge=0.0, le=1.0)
    seed_resize_from_w: int = Field(-1, ge=-1, le=4096)
    seed_resize_from_h: int = Field(-1, ge=-1, le=4096)
    batch_size: int = Field(1, ge=1, le=8)
    n_iter: int = Field(1, ge=1, le=64)
    clip_skip: int = Field(1, ge=1, le=12)
    randn_source: Literal["GPU", "CPU", "NV"] | None = Field(
        None, description="random number source of the noise (A1111's RNG: GPU, CPU or NV); None: the "
                          "randn_source setting")
    token_merging_ratio: float | None = Field(
        None, ge=0.0, le=0.9, description="token merging (ToMe) ratio, 0: off; None: the token_merging_ratio "
                                          "setting (img2img: token_merging_ratio_img2img when non-zero)")
    checkpoint: str | None = Field(None, description="checkpoint title/name; None: the loaded one")
    save_images: bool = True
    # SDXL refiner switch-over (A1111 names); None: no refiner
    refiner_checkpoint: str | None = Field(None, description="refiner checkpoint title/name")
    refiner_switch_at: float = Field(0.8, gt=0.0, lt=1.0,
                                     description="fraction of the sampling steps after which the refiner takes over")
    # add-ons: VAE choice (None: the sd_vae setting) and ControlNet units (sd-webui-controlnet fields)
    sd_vae: str | None = Field(None, description='"Automatic", "None" or a VAE file name; None: the setting')
    controlnet_units: list[ControlNetUnit] = Field(default_factory=list, max_length=8)
    # scripts (modules/scripts): a selectable script that runs the job, and always-on scripts' arguments
    script: ScriptCall | None = Field(None, description="a selectable script (X/Y/Z plot, Prompt matrix...) and its "
                                                        "arguments by name; None: a plain generation")
    alwayson_scripts: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="always-on script title -> its arguments by name (others take defaults)")
    # FLUX
    distilled_cfg_scale: float = Field(3.5, ge=0.0, le=30.0, description="FLUX.1 dev distilled guidance")
    max_sequence_length: int | None = Field(
        None, ge=1, le=512, description="FLUX T5 prompt tokens; None: the family maximum (dev 512, schnell 256)")
    # A1111 API semantics: what the loaded model cannot make exactly is fitted and reported, not refused
    fit_to_model: bool = Field(
        False, description="round a size to the family's multiple (and into its range) and clamp clip skip to "
                           "the text encoder's depth instead of refusing; the result's warnings say what changed")

    @field_validator("randn_source", mode="before")
    @classmethod
    def _rng_any_case(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) and value.strip() else (None if value == "" else value)

    @field_validator("sampler_name")
    @classmethod
    def _sampler_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("sampler_name must not be empty")
        return value.strip()

    @field_validator("refiner_checkpoint")
    @classmethod
    def _refiner_none_words(cls, value: str | None) -> str | None:
        # A1111 UIs send "None" / "" for "no refiner"
        if value is None or value.strip() in ("", "None", "none"):
            return None
        return value.strip()


#: A1111's latent upscale modes (``shared.latent_upscale_modes``), usable as ``hr_upscaler``
LATENT_UPSCALE_MODES = ("Latent", "Latent (antialiased)", "Latent (bicubic)", "Latent (bicubic antialiased)",
                        "Latent (nearest)", "Latent (nearest-exact)")


class Txt2ImgRequest(GenerationRequest):
    """A text-to-image job, optionally with A1111's hires fix (a second, img2img pass at a larger size)."""

    kind: Literal["txt2img"] = "txt2img"
    enable_hr: bool = False
    hr_scale: float = Field(2.0, ge=1.0, le=8.0)
    hr_resize_x: int = Field(0, ge=0, le=8192, description="0: use hr_scale")
    hr_resize_y: int = Field(0, ge=0, le=8192, description="0: use hr_scale")
    hr_upscaler: str = Field("Latent", description="a latent mode, Lanczos, Nearest, or an ESRGAN model name")
    hr_second_pass_steps: int = Field(0, ge=0, le=150, description="0: same as steps")
    denoising_strength: float = Field(0.7, ge=0.0, le=1.0, description="hires second pass")
    hr_sampler_name: str | None = Field(None, description="None: same sampler")
    hr_scheduler: str | None = Field(None, description="None: same schedule")
    hr_prompt: str = Field("", max_length=20000, description="empty: same prompt")
    hr_negative_prompt: str = Field("", max_length=20000, description="empty: same negative prompt")
    token_merging_ratio_hr: float | None = Field(
        None, ge=0.0, le=0.9, description="token merging ratio of the hires pass; None: the token_merging_ratio_hr "
                                          "setting when non-zero, else the first pass's ratio")

    @field_validator("hr_sampler_name", "hr_scheduler")
    @classmethod
    def _use_same(cls, value: str | None) -> str | None:
        if value is None or value.strip() in ("", "Use same sampler", "Use same scheduler"):
            return None
        return value.strip()


class Outpaint(BaseModel):
    """Extend the canvas by these many pixels per side and paint the new area (fill mode:
    the request's ``inpainting_fill``)."""

    model_config = ConfigDict(extra="forbid")

    left: int = Field(0, ge=0, le=2048)
    right: int = Field(0, ge=0, le=2048)
    up: int = Field(0, ge=0, le=2048)
    down: int = Field(0, ge=0, le=2048)

    @model_validator(mode="after")
    def _some_side(self) -> "Outpaint":
        if not (self.left or self.right or self.up or self.down):
            raise ValueError("outpaint needs at least one side with pixels > 0")
        return self


class Img2ImgRequest(GenerationRequest):
    """An image-to-image job; with ``mask`` (or ``outpaint``) an inpainting / outpainting job.

    ``width``/``height`` are the processing size (None: the first init image's size, rounded to the
    family's multiple). ``mask`` is white (or, for an RGBA sketch, opaque alpha) where to paint.
    """

    kind: Literal["img2img"] = "img2img"
    init_images: list[str] = Field(default_factory=list, max_length=64, description="base64 PNG/JPEG/WebP")
    mask: str | None = Field(None, description="base64 image; white / opaque alpha = repaint")
    resize_mode: int = Field(0, ge=0, le=3, description="0 just resize, 1 crop and resize, 2 resize and fill, "
                                                         "3 just resize (latent upscale)")
    denoising_strength: float = Field(0.75, ge=0.0, le=1.0)
    image_cfg_scale: float | None = Field(None, ge=0.0, le=30.0, description="instruct-pix2pix only; ignored")
    mask_blur: int | None = Field(None, ge=0, le=64, description="sets mask_blur_x and mask_blur_y")
    mask_blur_x: int = Field(4, ge=0, le=64)
    mask_blur_y: int = Field(4, ge=0, le=64)
    mask_round: bool = True
    inpainting_fill: int = Field(1, ge=0, le=3, description="0 fill, 1 original, 2 latent noise, 3 latent nothing")
    inpaint_full_res: bool = Field(False, description="True: 'Only masked' (crop, process, paste back)")
    inpaint_full_res_padding: int = Field(32, ge=0, le=1024)
    inpainting_mask_invert: int = Field(0, ge=0, le=1, description="1: repaint what is NOT masked")
    initial_noise_multiplier: float | None = Field(None, ge=0.0, le=2.0, description="only 1.0 is supported")
    include_init_images: bool = Field(False, description="API echo only")
    outpaint: Outpaint | None = Field(None, description="grow the canvas; the processing size is then the "
                                                       "grown canvas (width/height are not used)")
    flux_kontext: bool = Field(False, description="FLUX: edit following the prompt with the init image(s) as "
                                                  "Kontext reference(s) (no mask; denoising strength unused)")
    # soft inpainting (modules.generation.runners.soft_inpaint): the result blended into the original across a
    # feathered band at the mask's edge instead of A1111's hard overlay
    soft_inpainting: bool = Field(False, description="blend the result into the original at the mask's edge "
                                                     "(needs a mask)")
    soft_inpainting_softness: int = Field(8, ge=1, le=64, description="soft inpainting: width of the blend at "
                                                                       "the mask's edge, in pixels")
    soft_inpainting_preservation: float = Field(0.5, ge=0.0, le=1.0, description="soft inpainting: how much of "
                                                "the original the blend keeps (0: the mask's softness as is)")

    @model_validator(mode="after")
    def _blur_and_noise(self) -> "Img2ImgRequest":
        if self.mask_blur is not None:
            self.mask_blur_x = self.mask_blur_y = self.mask_blur
        if self.initial_noise_multiplier is not None and self.initial_noise_multiplier != 1.0:
            raise ValueError("initial_noise_multiplier other than 1.0 is not supported")
        return self

    @property
    def effective_mask_blur(self) -> int | None:
        """A1111's ``mask_blur`` property: the common value, or None when x and y differ."""
        return self.mask_blur_x if self.mask_blur_x == self.mask_blur_y else None


#: what the img2img batch may take from each image's PNG info (A1111's "Parameters to take from png info")
PNG_INFO_PROPS = ("Prompt", "Negative prompt", "Seed", "CFG scale", "Sampler", "Steps")


class Img2ImgBatchRequest(Img2ImgRequest):
    """img2img over many images as one job (A1111's img2img "Batch" tab): uploaded images
    (``batch_images``) or every image of a server folder (``input_dir``), one output each (times
    ``n_iter``), a summary of what was done and what failed and why.

    Folders (``input_dir``, ``output_dir``, ``mask_dir``) are server paths: accepted only under the data
    dir or a folder allowed with ``--allowed-dir`` (:mod:`modules.folder_access`). A mask of the same
    file stem in ``mask_dir`` (else ``mask``) applies to each image. Without ``output_dir`` images go to
    the normal img2img output folder. ``use_png_info`` takes ``png_info_props`` from each image's
    infotext (the prompts are appended to the request's, the others replace them).
    """

    kind: Literal["img2img_batch"] = "img2img_batch"  # type: ignore[assignment]
    input_dir: str | None = Field(None, description="server folder of images (under an allowed root)")
    batch_images: list[str] = Field(default_factory=list, max_length=64,
                                    description="uploaded images (base64), instead of input_dir")
    batch_names: list[str] = Field(default_factory=list, max_length=64,
                                   description="the uploaded images' file names (outputs are named after them)")
    output_dir: str | None = None
    mask_dir: str | None = None
    use_png_info: bool = Field(False, description="take png_info_props from each image's PNG info")
    png_info_props: list[Literal["Prompt", "Negative prompt", "Seed", "CFG scale", "Sampler", "Steps"]] = Field(
        default_factory=lambda: list(PNG_INFO_PROPS))

    @field_validator("input_dir", "output_dir", "mask_dir")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @model_validator(mode="after")
    def _one_source(self) -> "Img2ImgBatchRequest":
        if self.init_images:
            raise ValueError("an img2img batch takes batch_images or input_dir, not init_images")
        if bool(self.input_dir) == bool(self.batch_images):
            raise ValueError("an img2img batch needs uploaded images (batch_images) or an input folder "
                             "(input_dir): exactly one of them")
        if self.batch_names and len(self.batch_names) != len(self.batch_images):
            raise ValueError("batch_names must name every image of batch_images")
        if self.outpaint is not None or self.flux_kontext:
            raise ValueError("an img2img batch does not outpaint or edit with Kontext: use the img2img tab")
        return self
