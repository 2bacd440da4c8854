"""The typed request of a DreamBooth training job (``kind: "train_dreambooth"``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from modules.training.lora.request import clean_sample_prompts, safe_output_name

TextEncoderMode = Literal["off", "together", "two_stage"]
MixedPrecision = Literal["auto", "no", "bf16"]
ExportFormat = Literal["single_file", "diffusers", "both"]


class TrainDreamboothRequest(BaseModel):
    """Teach a checkpoint a subject under a rare token, keeping its class with generated class images."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["train_dreambooth"] = "train_dreambooth"
    name: str = Field(..., description="the exported checkpoint's file name (models/Stable-diffusion/<name>"
                                       ".safetensors) and the session's name")
    checkpoint: str | None = Field(None, description="base checkpoint title/name; None: the loaded one")
    dataset: str = Field(..., description="the instance images: a folder under the data dir or an --allowed-dir "
                                          "root; a <image>.txt beside an image is its caption")
    instance_prompt: str = Field("a sks shape", min_length=1, max_length=500,
                                 description="the prompt of the instance images: a rare token + the class")
    class_prompt: str | None = Field(None, max_length=8000,
                                     description="the prompt of the class images (e.g. 'a shape'); several, one a "
                                                 "line: the class images cycle through them, each trained with its "
                                                 "own prompt; needed when num_class_images > 0")
    num_class_images: int = Field(50, ge=0, le=1000,
                                  description="class images for prior preservation; fewer in the session are "
                                              "generated once by the base model (0: no prior preservation)")
    class_steps: int = Field(20, ge=1, le=150, description="sampling steps of each generated class image")
    prior_loss_weight: float = Field(1.0, ge=0.0, le=100.0,
                                     description="weight of the class images' loss (with num_class_images > 0)")
    train_text_encoder: TextEncoderMode = Field(
        "off", description="off: UNet only; together: UNet and text encoder in every step; two_stage: the text "
                           "encoder alone for text_encoder_steps, then the UNet alone (fast-DreamBooth)")
    text_encoder_steps: int = Field(0, ge=0, le=100_000, description="two_stage: the text encoder's steps")
    text_encoder_lr: float | None = Field(None, gt=0, le=1.0,
                                          description="the text encoder's learning rate; None: learning_rate")
    resolution: int | None = Field(None, ge=64, le=2048, description="training size (square); None: the model's")
    steps: int = Field(400, ge=1, le=100_000)
    batch_size: int = Field(1, ge=1, le=16, description="instance images per step (as many class images join)")
    learning_rate: float = Field(5e-6, gt=0, le=1.0)
    gradient_checkpointing: bool = Field(False, description="recompute activations in the backward pass: less "
                                                            "memory, slower steps")
    mixed_precision: MixedPrecision = Field(
        "auto", description="auto: bf16 autocast where the device computes bf16 natively, else fp32; bf16: "
                            "bf16 autocast, refused where the device has no native bf16; no: fp32")
    use_8bit_adam: bool = Field(False, description="bitsandbytes' 8-bit AdamW (CUDA only; refused elsewhere)")
    ema_decay: float | None = Field(None, gt=0.0, lt=1.0,
                                    description="keep an EMA of the UNet and export it (e.g. 0.9999); None: off")
    seed: int = Field(0, ge=0, le=2**32 - 1)
    checkpoint_every: int = Field(50, ge=1, le=100_000, description="save the session every N steps")
    overwrite: bool = Field(False, description="replace an existing checkpoint file of the same name")
    export_dtype: Literal["float16", "bfloat16", "float32"] = Field("float16",
                                                                   description="weights of the exported file")
    export_format: ExportFormat = Field(
        "single_file", description="single_file: models/Stable-diffusion/<name>.safetensors in the original layout "
                                   "(A1111 loads it); diffusers: the folder models/Stable-diffusion/<name>-diffusers "
                                   "(from_pretrained loads it); both")
    sample_every: int = Field(0, ge=0, le=100_000, description="render the sample prompts every N steps (0: never) "
                                                               "into the session's samples/ folder")
    sample_prompts: list[str] = Field(default_factory=list, max_length=8,
                                      description="prompts of the sample images (fixed seeds: seed, seed+1, ...); "
                                                  "empty: the instance prompt")
    sample_steps: int = Field(20, ge=1, le=150, description="sampling steps of each sample image")

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        return safe_output_name(value)

    @field_validator("class_prompt")
    @classmethod
    def _class_lines(cls, value: str | None) -> str | None:
        """Blank lines dropped, each line stripped; blank: None."""
        if value is None:
            return None
        lines = [line.strip() for line in value.splitlines() if line.strip()]
        if len(lines) > 32 or any(len(line) > 500 for line in lines):
            raise ValueError("class_prompt: at most 32 prompts (one a line), each at most 500 characters")
        return "\n".join(lines) or None

    @field_validator("sample_prompts")
    @classmethod
    def _prompts(cls, value: list[str]) -> list[str]:
        return clean_sample_prompts(value)

    @model_validator(mode="after")
    def _consistent(self) -> "TrainDreamboothRequest":
        if self.num_class_images > 0 and not self.class_prompt:
            raise ValueError("class_prompt is needed for prior preservation (num_class_images > 0); set "
                             "num_class_images to 0 to train without class images")
        if self.num_class_images == 0 and self.class_prompt:
            raise ValueError("class_prompt is used only with class images: set num_class_images above 0")
        defaults = {name: type(self).model_fields[name].default for name in ("prior_loss_weight", "class_steps")}
        if self.num_class_images == 0 and any(getattr(self, name) != value for name, value in defaults.items()):
            raise ValueError("prior_loss_weight and class_steps are used only with class images: set "
                             "num_class_images above 0")
        if self.train_text_encoder == "two_stage":
            if not 1 <= self.text_encoder_steps < self.steps:
                raise ValueError("two_stage: text_encoder_steps must be at least 1 and below steps (the UNet "
                                 "trains in the steps after)")
        elif self.text_encoder_steps:
            raise ValueError("text_encoder_steps is used only with train_text_encoder two_stage")
        if self.train_text_encoder == "off" and self.text_encoder_lr is not None:
            raise ValueError("text_encoder_lr is used only when the text encoder trains (together or two_stage)")
        return self

    @property
    def prior_preservation(self) -> bool:
        return self.num_class_images > 0

    def class_prompts(self) -> list[str]:
        """The class prompts (one a line of ``class_prompt``); class image ``i`` is made from prompt ``i % n``."""
        return (self.class_prompt or "").splitlines()

    def samples(self) -> list[str]:
        """The prompts rendered every ``sample_every`` steps."""
        return self.sample_prompts or [self.instance_prompt]

    def unet_trains(self, step: int) -> bool:
        """Whether step ``step`` (0-based) updates the UNet."""
        return self.train_text_encoder != "two_stage" or step >= self.text_encoder_steps

    def text_encoder_trains(self, step: int) -> bool:
        """Whether step ``step`` (0-based) updates the text encoder."""
        mode = self.train_text_encoder
        return mode == "together" or (mode == "two_stage" and step < self.text_encoder_steps)
