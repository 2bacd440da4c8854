"""The model-family registry: one declarative record per supported family.

Everything family-specific lives here as data: defaults, pipeline classes, the shipped config folder,
the single-file key layout, the header rules that recognise a checkpoint and the folder rules that
recognise a diffusers folder. Detection and loading read these records; they hold no family ``if`` chains.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

#: Repository root (configs/families/<id>/ lives below it).
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class KeyRule:
    """Header-key rule. Patterns are key prefixes (a full key name is its own prefix).

    Matches when every ``all_of`` pattern, at least one pattern of each ``any_of`` group and none of
    the ``none_of`` patterns occur among the checkpoint's keys.
    """

    all_of: tuple[str, ...] = ()
    any_of: tuple[tuple[str, ...], ...] = ()
    none_of: tuple[str, ...] = ()


@dataclass(frozen=True)
class VariantRule:
    """A variant fact read from a tensor shape: ``name`` is true when ``shape[dim] == equals``."""

    name: str
    keys: tuple[str, ...]
    dim: int
    equals: int


@dataclass(frozen=True)
class FolderCondition:
    """A condition on a JSON file of a diffusers folder (``file`` relative to the folder).

    ``equals``: the value at ``key`` must be one of these; ``present``: the entry must be (or not be)
    a real component (not missing, null or ``[null, null]``).
    """

    file: str
    key: str
    equals: tuple[object, ...] = ()
    present: bool | None = None


@dataclass(frozen=True)
class FolderVariant:
    """A variant fact of a diffusers folder: ``name`` is true when ``file[key] == equals``."""

    name: str
    file: str
    key: str
    equals: object


@dataclass(frozen=True)
class FolderRule:
    """Recognises a diffusers folder: ``model_index.json`` class name plus extra conditions."""

    pipeline_classes: tuple[str, ...]
    conditions: tuple[FolderCondition, ...] = ()
    variants: tuple[FolderVariant, ...] = ()


@dataclass(frozen=True)
class TextEncoderSpec:
    """Where a text encoder sits in an original (LDM/SGM) single-file checkpoint."""

    component: str  # "text_encoder" | "text_encoder_2"
    layout: str  # "clip": HF CLIP keys under prefix | "openclip": OpenCLIP resblocks under prefix
    prefix: str
    drop_last_layer: bool = False  # SD 2.x conditions on the penultimate OpenCLIP layer
    with_projection: bool = False  # CLIPTextModelWithProjection (SDXL text_encoder_2)


@dataclass(frozen=True)
class ModelFamily:
    """One supported model family (see module docstring)."""

    id: str
    label: str
    architecture: str  # "ldm-unet" | "flux"
    default_size: tuple[int, int]
    size_multiple: int
    min_size: int
    max_size: int
    prediction_type: str  # "epsilon" | "v_prediction" | "flow"
    default_steps: int
    default_cfg: float
    default_sampler: str
    pipelines: Mapping[str, str]
    config_dir: str
    header_rule: KeyRule
    folder_rule: FolderRule
    variant_rules: tuple[VariantRule, ...] = ()
    # v vs epsilon cannot be read from the header: the families sharing a header rule are told apart
    # by prediction type (override, metadata, sidecar yaml, then a UNet probe).
    prediction_probe: bool = False
    # single-file layout (ldm-unet families)
    unet_prefix: str = "model.diffusion_model."
    vae_prefix: str = "first_stage_model."
    text_encoders: tuple[TextEncoderSpec, ...] = ()
    unet_head_channels: int | None = None  # heads per level = channels // this (None: keep config value)
    add_time_ids: int = 0  # SDXL micro-conditioning ids (6 base, 5 refiner)
    clip_head_channels: int = 64

    @property
    def config_path(self) -> Path:
        """Absolute path of the shipped config folder."""
        return REPO_ROOT / self.config_dir

    @property
    def supports_txt2img(self) -> bool:
        """False for refiner-only families (no txt2img pipeline)."""
        return "txt2img" in self.pipelines


def _pipes(txt2img: str | None, img2img: str, inpaint: str) -> Mapping[str, str]:
    table = {"img2img": img2img, "inpaint": inpaint}
    if txt2img:
        table = {"txt2img": txt2img, **table}
    return MappingProxyType(table)


_SD_PIPES = _pipes("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline", "StableDiffusionInpaintPipeline")
_XL_PIPES = _pipes(
    "StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline", "StableDiffusionXLInpaintPipeline"
)
_XL_REFINER_PIPES = _pipes(None, "StableDiffusionXLImg2ImgPipeline", "StableDiffusionXLInpaintPipeline")
_FLUX_PIPES = MappingProxyType({**_pipes("FluxPipeline", "FluxImg2ImgPipeline", "FluxInpaintPipeline"),
                                 "kontext": "FluxKontextPipeline"})  # reference-image editing (Kontext)

_UNET = "model.diffusion_model."
_LDM_INPAINT = (VariantRule("inpaint", (_UNET + "input_blocks.0.0.weight",), 1, 9),)
_LDM_FOLDER_INPAINT = (FolderVariant("inpaint", "unet/config.json", "in_channels", 9),)
_FLUX_FOLDER_FILL = (FolderVariant("inpaint", "transformer/config.json", "in_channels", 384),)
_SD_FOLDER_CLASSES = tuple(_SD_PIPES.values())
_XL_FOLDER_CLASSES = tuple(_XL_PIPES.values())
_FLUX_QKV = ("double_blocks.0.img_attn.qkv.weight", _UNET + "double_blocks.0.img_attn.qkv.weight")
_FLUX_GUIDANCE = ("guidance_in.", _UNET + "guidance_in.")
_FLUX_FILL = (VariantRule("inpaint", ("img_in.weight", _UNET + "img_in.weight"), 1, 384),)

_SD1_TE = TextEncoderSpec("text_encoder", "clip", "cond_stage_model.transformer.")
_SD2_TE = TextEncoderSpec("text_encoder", "openclip", "cond_stage_model.model.", drop_last_layer=True)
_SD2_RULE = KeyRule(
    all_of=(_UNET + "input_blocks.", "cond_stage_model.model.transformer.resblocks."),
    none_of=("conditioner.", _UNET + "label_emb."),
)
_SD2_FOLDER = FolderRule(
    _SD_FOLDER_CLASSES, (FolderCondition("text_encoder/config.json", "hidden_act", ("gelu",)),), _LDM_FOLDER_INPAINT
)

FAMILIES: tuple[ModelFamily, ...] = (
    ModelFamily(
        id="sd1", label="SD 1.x", architecture="ldm-unet", default_size=(512, 512), size_multiple=8,
        min_size=64, max_size=2048, prediction_type="epsilon", default_steps=20, default_cfg=7.0,
        default_sampler="DPM++ 2M", pipelines=_SD_PIPES, config_dir="configs/families/sd1",
        header_rule=KeyRule(
            all_of=(_UNET + "input_blocks.",),
            any_of=(("cond_stage_model.transformer.text_model.encoder.", "cond_stage_model.transformer.encoder."),),
            none_of=("cond_stage_model.model.", "conditioner.", _UNET + "label_emb."),
        ),
        folder_rule=FolderRule(
            _SD_FOLDER_CLASSES, (FolderCondition("text_encoder/config.json", "hidden_act", ("quick_gelu",)),),
            _LDM_FOLDER_INPAINT,
        ),
        variant_rules=_LDM_INPAINT, text_encoders=(_SD1_TE,),
    ),
    ModelFamily(
        id="sd2-512", label="SD 2.x (512, epsilon)", architecture="ldm-unet", default_size=(512, 512),
        size_multiple=8, min_size=64, max_size=2048, prediction_type="epsilon", default_steps=20,
        default_cfg=7.0, default_sampler="DPM++ 2M", pipelines=_SD_PIPES, config_dir="configs/families/sd2-512",
        header_rule=_SD2_RULE, folder_rule=_SD2_FOLDER, variant_rules=_LDM_INPAINT, prediction_probe=True,
        text_encoders=(_SD2_TE,), unet_head_channels=64,
    ),
    ModelFamily(
        id="sd2-768-v", label="SD 2.x (768, v-prediction)", architecture="ldm-unet", default_size=(768, 768),
        size_multiple=8, min_size=64, max_size=2048, prediction_type="v_prediction", default_steps=20,
        default_cfg=7.0, default_sampler="DPM++ 2M", pipelines=_SD_PIPES, config_dir="configs/families/sd2-768-v",
        header_rule=_SD2_RULE, folder_rule=_SD2_FOLDER, variant_rules=_LDM_INPAINT, prediction_probe=True,
        text_encoders=(_SD2_TE,), unet_head_channels=64,
    ),
    ModelFamily(
        id="sdxl", label="SDXL", architecture="ldm-unet", default_size=(1024, 1024), size_multiple=8,
        min_size=64, max_size=4096, prediction_type="epsilon", default_steps=25, default_cfg=7.0,
        default_sampler="DPM++ 2M", pipelines=_XL_PIPES, config_dir="configs/families/sdxl",
        header_rule=KeyRule(
            all_of=("conditioner.embedders.0.transformer.", "conditioner.embedders.1.model.", _UNET + "label_emb."),
        ),
        folder_rule=FolderRule(
            _XL_FOLDER_CLASSES, (FolderCondition("model_index.json", "text_encoder", present=True),),
            _LDM_FOLDER_INPAINT,
        ),
        variant_rules=_LDM_INPAINT,
        text_encoders=(
            TextEncoderSpec("text_encoder", "clip", "conditioner.embedders.0.transformer."),
            TextEncoderSpec("text_encoder_2", "openclip", "conditioner.embedders.1.model.", with_projection=True),
        ),
        unet_head_channels=64, add_time_ids=6,
    ),
    ModelFamily(
        id="sdxl-refiner", label="SDXL Refiner", architecture="ldm-unet", default_size=(1024, 1024),
        size_multiple=8, min_size=64, max_size=4096, prediction_type="epsilon", default_steps=25,
        default_cfg=7.0, default_sampler="DPM++ 2M", pipelines=_XL_REFINER_PIPES,
        config_dir="configs/families/sdxl-refiner",
        header_rule=KeyRule(
            all_of=("conditioner.embedders.0.model.", _UNET + "label_emb."),
            none_of=("conditioner.embedders.1.", "conditioner.embedders.0.transformer."),
        ),
        folder_rule=FolderRule(
            _XL_FOLDER_CLASSES, (FolderCondition("model_index.json", "text_encoder", present=False),),
            _LDM_FOLDER_INPAINT,
        ),
        variant_rules=_LDM_INPAINT,
        text_encoders=(
            TextEncoderSpec("text_encoder_2", "openclip", "conditioner.embedders.0.model.", with_projection=True),
        ),
        unet_head_channels=64, add_time_ids=5,
    ),
    ModelFamily(
        id="flux-dev", label="FLUX.1 dev", architecture="flux", default_size=(1024, 1024), size_multiple=16,
        min_size=64, max_size=2048, prediction_type="flow", default_steps=20, default_cfg=3.5,
        default_sampler="Euler", pipelines=_FLUX_PIPES, config_dir="configs/families/flux-dev",
        header_rule=KeyRule(any_of=(_FLUX_QKV, _FLUX_GUIDANCE)),
        folder_rule=FolderRule(
            tuple(_FLUX_PIPES.values()), (FolderCondition("transformer/config.json", "guidance_embeds", (True,)),),
            _FLUX_FOLDER_FILL,
        ),
        variant_rules=_FLUX_FILL, unet_prefix="",
    ),
    ModelFamily(
        id="flux-schnell", label="FLUX.1 schnell", architecture="flux", default_size=(1024, 1024),
        size_multiple=16, min_size=64, max_size=2048, prediction_type="flow", default_steps=4,
        default_cfg=1.0, default_sampler="Euler", pipelines=_FLUX_PIPES, config_dir="configs/families/flux-schnell",
        header_rule=KeyRule(any_of=(_FLUX_QKV,), none_of=_FLUX_GUIDANCE),
        folder_rule=FolderRule(
            tuple(_FLUX_PIPES.values()), (FolderCondition("transformer/config.json", "guidance_embeds", (False,)),),
            _FLUX_FOLDER_FILL,
        ),
        variant_rules=_FLUX_FILL, unet_prefix="",
    ),
)

_BY_ID: Mapping[str, ModelFamily] = MappingProxyType({family.id: family for family in FAMILIES})


class UnknownFamilyError(KeyError):
    """Raised by :func:`get_family` for an id that is not in the registry."""

    def __str__(self) -> str:
        return f"unknown model family '{self.args[0]}' (known: {', '.join(_BY_ID)})"


def get_family(family_id: str) -> ModelFamily:
    """Return the registered family with this id."""
    try:
        return _BY_ID[family_id]
    except KeyError:
        raise UnknownFamilyError(family_id) from None
