"""Job kinds that make new model files: ``merge_models`` (Checkpoint Merger) and ``convert_model``.

Both run on the ``models`` lane (file work on the CPU, beside generation), write atomically into the
checkpoint folder (or beside the source for other kinds) and refresh the checkpoint list, so the result
can be picked at once.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from modules.jobs.kinds import JobKind
from modules.models.convert.pickle_to_safetensors import ConversionError
from modules.models.errors import ModelLoadError
from modules.models.merge import MergeError

if TYPE_CHECKING:
    from modules.app_context import AppContext
    from modules.jobs.model import Job
    from modules.jobs.progress import JobControl

MODELS_LANE = "models"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.()+-]{0,119}$")


def _output_name(value: str) -> str:
    value = value.strip().removesuffix(".safetensors")
    if not _NAME.match(value):
        raise ValueError("output name: letters, digits, space and _ . ( ) + - only, starting with a letter or digit")
    return value


class MergeModelsRequest(BaseModel):
    """Merge two or three checkpoints of one family into a new checkpoint."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["merge_models"] = "merge_models"
    primary: str = Field(..., description="checkpoint A (title or name)")
    secondary: str = Field(..., description="checkpoint B")
    tertiary: str | None = Field(None, description="checkpoint C (add difference, train difference)")
    method: Literal["weighted_sum", "add_difference", "train_difference"] = Field("weighted_sum", description=(
        "weighted_sum: A*(1-M)+B*M; add_difference: A+(B-C)*M; train_difference (supermerger's): "
        "A+1.8*M*(B-C)*|B-A|/(|B-C|+|B-A|)"))
    multiplier: float = Field(0.5, ge=0.0, le=1.0, description="M (see method)")
    output: str = Field(..., description="the new checkpoint's name (models/Stable-diffusion/<output>.safetensors)")
    dtype: Literal["keep", "fp16", "bf16"] = "keep"
    bake_vae: str | None = Field(None, description="a VAE file of models/VAE to bake in")

    @field_validator("output")
    @classmethod
    def _check_output(cls, value: str) -> str:
        return _output_name(value)


class ConvertModelRequest(BaseModel):
    """Convert a checkpoint: pickle to safetensors, fp16/bf16, EMA pruning, diffusers folder <-> single file."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["convert_model"] = "convert_model"
    source: str = Field(..., description="the checkpoint (title or name; .ckpt/.pt files too)")
    operation: Literal["to_safetensors", "fp16", "bf16", "prune_ema", "ema_only", "to_single_file",
                       "to_diffusers"] = Field("to_safetensors", description=(
        "to_single_file: a diffusers folder -> one .safetensors in the original LDM layout; to_diffusers: a "
        "single file -> a diffusers folder; the others work on single files"))
    output: str | None = Field(None, description="the new file's name; default: the source's name + a suffix")

    @field_validator("output")
    @classmethod
    def _check_output(cls, value: str | None) -> str | None:
        return None if value is None else _output_name(value)


def _checkpoint(ctx: "AppContext", name: str) -> Path:
    return ctx.models.resolve(name).path


def _target(ctx: "AppContext", name: str, folder: bool = False) -> Path:
    path = ctx.paths.ckpt_dirs[0] / (name if folder else f"{name}.safetensors")
    if path.exists():
        raise ConversionError(f"{path.name} exists already in the checkpoint folder: pick another name")
    return path


def precheck_merge(ctx: "AppContext", req: MergeModelsRequest) -> None:
    from modules.models.merge import MergeInputs, check_inputs

    if req.method != "weighted_sum" and not req.tertiary:
        raise MergeError(f"{req.method.replace('_', ' ')} needs a third checkpoint (tertiary, C)")
    _target(ctx, req.output)
    check_inputs(_merge_inputs(ctx, req, MergeInputs))
    if req.bake_vae and not (ctx.paths.vae_dir / req.bake_vae).is_file():
        raise MergeError(f"no VAE named {req.bake_vae!r} in models/VAE")


def _merge_inputs(ctx: "AppContext", req: MergeModelsRequest, cls: Any) -> Any:
    return cls(primary=_checkpoint(ctx, req.primary), secondary=_checkpoint(ctx, req.secondary),
               tertiary=_checkpoint(ctx, req.tertiary) if req.tertiary else None, method=req.method,
               multiplier=req.multiplier, dtype=req.dtype,
               vae=(ctx.paths.vae_dir / req.bake_vae) if req.bake_vae else None)


def run_merge(ctx: "AppContext", job: "Job", control: "JobControl") -> dict[str, Any]:
    from modules.models.merge import MergeInputs, merge, save_merged

    req: MergeModelsRequest = job.request
    inputs = _merge_inputs(ctx, req, MergeInputs)
    target = _target(ctx, req.output)
    control.begin(1, 1000, text=f"merging into {target.name}")
    state = merge(inputs, on_progress=lambda done, total: control.step(done * 1000 // max(total, 1)))
    path = save_merged(target, state, inputs)
    ctx.catalog.refresh()
    return {"checkpoint": path.name, "path": ctx.paths.shown(path), "tensors": len(state)}


def precheck_convert(ctx: "AppContext", req: ConvertModelRequest) -> None:
    source = _checkpoint(ctx, req.source)
    if source.is_dir() and req.operation != "to_single_file":
        raise ConversionError(f"{source.name} is a diffusers folder: convert it to a single file (to_single_file)")
    if req.operation == "to_single_file" and not source.is_dir():
        raise ConversionError(f"{source.name} is a single file already (to_single_file takes a diffusers folder)")
    if req.operation not in ("to_safetensors", "to_single_file") and source.suffix.lower() != ".safetensors":
        raise ConversionError(f"{source.name}: convert it to .safetensors first")
    _target(ctx, _convert_name(req, source), folder=req.operation == "to_diffusers")
    if req.operation in ("to_single_file", "to_diffusers"):
        from modules.models.convert.formats import check_layout

        check_layout(source, ctx.flags.allow_pickle)  # header only: FLUX and the like refused before queueing


def _convert_name(req: ConvertModelRequest, source: Path) -> str:
    suffix = {"to_safetensors": "", "fp16": "-fp16", "bf16": "-bf16", "prune_ema": "-pruned", "ema_only": "-emaonly",
              "to_single_file": "", "to_diffusers": "-diffusers"}
    return req.output or (source.name if source.is_dir() else source.stem) + suffix[req.operation]


def run_convert(ctx: "AppContext", job: "Job", control: "JobControl") -> dict[str, Any]:
    from safetensors.torch import load_file

    from modules.models.convert.pickle_to_safetensors import (prune_ema, read_pickled_tensors, to_dtype,
                                                              write_safetensors)

    req: ConvertModelRequest = job.request
    source = _checkpoint(ctx, req.source)
    if req.operation in ("to_single_file", "to_diffusers"):
        return _run_layout(ctx, req, source, control)
    target = _target(ctx, _convert_name(req, source))
    control.begin(1, 2, text=f"converting {source.name}")
    state = load_file(str(source)) if source.suffix.lower() == ".safetensors" else read_pickled_tensors(source)
    control.step(1)
    if req.operation in ("fp16", "bf16"):
        state = to_dtype(state, req.operation)
    elif req.operation in ("prune_ema", "ema_only"):
        state = prune_ema(state, use_ema=req.operation == "ema_only")
    path = write_safetensors(target, state, {"format": "pt", "atelier_converted_from": source.name,
                                              "atelier_operation": req.operation})
    control.step(2)
    ctx.catalog.refresh()
    return {"checkpoint": path.name, "path": ctx.paths.shown(path), "tensors": len(state)}


def _run_layout(ctx: "AppContext", req: ConvertModelRequest, source: Path, control: "JobControl") -> dict[str, Any]:
    from modules.models.convert.formats import folder_to_single_file, single_file_to_folder

    to_folder = req.operation == "to_diffusers"
    target = _target(ctx, _convert_name(req, source), folder=to_folder)
    control.begin(1, 2, text=f"converting {source.name} to {'a diffusers folder' if to_folder else 'a single file'}")
    if to_folder:
        path = single_file_to_folder(source, target, cache_dir=ctx.paths.cache_dir,
                                     allow_pickle=ctx.flags.allow_pickle, on_progress=control.step)
    else:
        path = folder_to_single_file(source, target, cache_dir=ctx.paths.cache_dir, on_progress=control.step)
    ctx.catalog.refresh()
    return {"checkpoint": path.name, "path": ctx.paths.shown(path)}


class ConvertLoraRequest(BaseModel):
    """Convert a LoRA between the diffusers/PEFT layout and kohya's (A1111's)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["convert_lora"] = "convert_lora"
    source: str = Field(..., max_length=1000, description="the LoRA file, as listed in models/Lora (sub/x.safetensors)")
    to: Literal["kohya", "peft"] = Field("kohya", description="kohya: lora_unet_/lora_te_text_model_ keys (A1111); "
                                         "peft: diffusers' unet./text_encoder. keys")
    family: Literal["auto", "sd1", "sd2", "sdxl"] = Field("auto", description="the model family it was made for")
    output: str | None = Field(None, description="the new file's name; default: the source's name + -kohya/-peft")

    @field_validator("output")
    @classmethod
    def _check_output(cls, value: str | None) -> str | None:
        return None if value is None else _output_name(value)


def _lora_source(ctx: "AppContext", name: str) -> Path:
    from modules.models.library import LibraryError, ModelLibrary

    library = ctx.library or ModelLibrary(ctx.paths, ctx.catalog, ctx.hashes)
    try:
        entry = library.find("lora", name)
    except LibraryError as exc:
        raise ConversionError(str(exc)) from None
    if entry.path.suffix.lower() != ".safetensors":
        raise ConversionError(f"{entry.id}: only .safetensors LoRA files are converted")
    return entry.path


def _lora_target(ctx: "AppContext", req: ConvertLoraRequest, source: Path) -> Path:
    path = source.with_name(f"{req.output or source.stem + '-' + req.to}.safetensors")
    if path.exists():
        raise ConversionError(f"{path.name} exists already in the LoRA folder: pick another name")
    return path


def precheck_convert_lora(ctx: "AppContext", req: ConvertLoraRequest) -> None:
    _lora_target(ctx, req, _lora_source(ctx, req.source))


def run_convert_lora(ctx: "AppContext", job: "Job", control: "JobControl") -> dict[str, Any]:
    from safetensors import SafetensorError, safe_open

    from modules.generation.addons.lora_convert import LoraError
    from modules.models.convert.lora_format import convert_lora_state
    from modules.models.convert.pickle_to_safetensors import write_safetensors

    req: ConvertLoraRequest = job.request
    source = _lora_source(ctx, req.source)
    target = _lora_target(ctx, req, source)
    control.begin(1, 2, text=f"converting {source.name} to the {req.to} layout")
    try:
        with safe_open(str(source), framework="pt") as handle:
            state = {key: handle.get_tensor(key) for key in handle.keys()}
            metadata = dict(handle.metadata() or {})
    except (SafetensorError, OSError) as exc:
        raise ConversionError(f"cannot read {source.name}: {exc}") from None
    control.step(1)
    try:
        out, meta, family = convert_lora_state(state, metadata, to=req.to, family=req.family, label=source.name)
    except LoraError as exc:
        raise ConversionError(str(exc)) from None
    path = write_safetensors(target, out, {**meta, "atelier_converted_from": source.name,
                                           "atelier_operation": f"convert_lora:{req.to}"})
    control.step(2)
    return {"file": path.name, "path": ctx.paths.shown(path), "family": family, "tensors": len(out)}


def _describe(result: Any) -> dict[str, Any] | None:
    return dict(result) if isinstance(result, dict) else None


MERGE_MODELS = JobKind(
    name="merge_models", request=MergeModelsRequest, run=run_merge, precheck=precheck_merge, describe=_describe,
    summary="Merge checkpoints (weighted sum, add difference or train difference) into a new .safetensors checkpoint.",
    user_errors=(MergeError, ConversionError, ModelLoadError), lane=MODELS_LANE)

CONVERT_MODEL = JobKind(
    name="convert_model", request=ConvertModelRequest, run=run_convert, precheck=precheck_convert,
    describe=_describe,
    summary="Convert a checkpoint: .ckpt to .safetensors (without running its pickle), fp16/bf16, EMA pruning, "
            "diffusers folder to single file (LDM layout) and back.",
    user_errors=(ConversionError, ModelLoadError), lane=MODELS_LANE)

CONVERT_LORA = JobKind(
    name="convert_lora", request=ConvertLoraRequest, run=run_convert_lora, precheck=precheck_convert_lora,
    describe=_describe,
    summary="Convert a LoRA between the diffusers/PEFT layout and kohya's (A1111's lora_te_text_model_ names).",
    user_errors=(ConversionError,), lane=MODELS_LANE)

KINDS = (MERGE_MODELS, CONVERT_MODEL, CONVERT_LORA)
