"""``/sdapi/v1`` listings, options and system routes, in A1111's shapes.

Where a capability is not built yet the answer is honest: an empty list (hypernetworks, face
restorers, Real-ESRGAN's own list) or, for embeddings, the files found listed as skipped. Files on
disk (VAEs, LoRAs, ESRGAN-family upscalers) are listed as found.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Body, Depends, Response

from modules.api.errors import ApiError, error_responses
from modules.api.sdapi_listing_models import (EmbeddingItem, EmbeddingsResponse, FaceRestorerItem, HypernetworkItem,
                                              LatentUpscaleModeItem, LoraItem, MemoryResponse, PromptStyleItem,
                                              RealesrganItem, ScriptInfoItem, ScriptsList, SdVaeItem, UpscalerItem)
from modules.api.sdapi_models import NULL_RESPONSE, SamplerItem, SchedulerItem, SdModelItem
from modules.api.security import principal_of
from modules.jobs.model import DiskFullError, JobState, QueueFullError
from modules.lazy_imports import loaded_module

if TYPE_CHECKING:
    from modules.app_context import AppContext
    from modules.flags import Flags

WEIGHT_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".bin")
SECRET_FLAGS = ("api_auth", "gradio_auth", "api_keys")


def _files(folder: Path, extensions: tuple[str, ...] = WEIGHT_EXTENSIONS) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in extensions),
                  key=lambda p: str(p).lower())


def _lora_metadata(path: Path) -> dict[str, Any]:
    if path.suffix.lower() != ".safetensors":
        return {}
    from modules.models.errors import ModelLoadError
    from modules.models.header import read_safetensors_header

    try:
        return dict(read_safetensors_header(path).metadata)
    except ModelLoadError:
        return {}


def flags_view(flags: "Flags") -> dict[str, Any]:
    """``/cmd-flags``: every flag, paths as strings, credentials masked."""
    out: dict[str, Any] = {}
    for field in dataclasses.fields(flags):
        value = getattr(flags, field.name)
        if field.name in SECRET_FLAGS:
            value = "***" if value else None
        elif isinstance(value, Path):
            value = str(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[field.name] = value
    return out


def _memory() -> dict[str, Any]:
    import psutil

    process = psutil.Process(os.getpid())
    rss = process.memory_info().rss
    total = psutil.virtual_memory().total
    ram = {"free": total - rss, "used": rss, "total": total}
    torch = loaded_module("torch")  # never import torch (or wake CUDA) just to answer this
    if torch is None or not torch.cuda.is_available():
        return {"ram": ram, "cuda": {"error": "unavailable"}}
    try:
        free, total_cuda = torch.cuda.mem_get_info()
        stats = torch.cuda.memory_stats()

        def pair(name: str) -> dict[str, int]:
            return {"current": stats.get(f"{name}.all.current", 0), "peak": stats.get(f"{name}.all.peak", 0)}

        cuda = {"system": {"free": free, "used": total_cuda - free, "total": total_cuda},
                "active": pair("active_bytes"), "allocated": pair("allocated_bytes"),
                "reserved": pair("reserved_bytes"), "inactive": pair("inactive_split_bytes"),
                "events": {"retries": stats.get("num_alloc_retries", 0), "oom": stats.get("num_ooms", 0)}}
    except RuntimeError as exc:
        cuda = {"error": str(exc)}
    return {"ram": ram, "cuda": cuda}


def add_listing_routes(router: APIRouter, ctx: "AppContext") -> None:
    from modules.generation.sampling.samplers import list_samplers, list_schedules
    from modules.images.upscale import list_upscalers

    @router.get("/samplers", response_model=list[SamplerItem])
    def samplers() -> list[dict[str, Any]]:
        active = ctx.models.active
        return list_samplers(active.model.prediction_type if active else None)

    @router.get("/schedulers", response_model=list[SchedulerItem])
    def schedulers() -> list[dict[str, Any]]:
        return list_schedules()

    @router.get("/sd-models", response_model=list[SdModelItem])
    def sd_models() -> list[SdModelItem]:
        items = []
        for info in ctx.catalog.list():
            sha = ctx.catalog.sha256(info)
            items.append(SdModelItem(title=ctx.catalog.title(info), model_name=info.model_name,
                                     hash=sha[:10] if sha else None, sha256=sha,
                                     filename=str(info.path), config=None))
        return items

    @router.get("/sd-vae", response_model=list[SdVaeItem])
    def sd_vae() -> list[SdVaeItem]:
        return [SdVaeItem(model_name=p.name, filename=str(p)) for p in _files(ctx.paths.vae_dir)]

    @router.get("/upscalers", response_model=list[UpscalerItem])
    def upscalers() -> list[dict[str, Any]]:
        return list_upscalers(ctx.upscalers)

    @router.get("/latent-upscale-modes", response_model=list[LatentUpscaleModeItem])
    def latent_upscale_modes() -> list[LatentUpscaleModeItem]:
        from modules.images.upscalers import LATENT_MODES  # hires fix's latent upscalers

        return [LatentUpscaleModeItem(name=name) for name in LATENT_MODES]

    @router.get("/hypernetworks", response_model=list[HypernetworkItem])
    def hypernetworks() -> list[HypernetworkItem]:
        return []  # not supported

    @router.get("/face-restorers", response_model=list[FaceRestorerItem])
    def face_restorers() -> list[FaceRestorerItem]:
        return []  # no GFPGAN/CodeFormer

    @router.get("/realesrgan-models", response_model=list[RealesrganItem])
    def realesrgan_models() -> list[RealesrganItem]:
        return []  # no Real-ESRGAN

    @router.get("/prompt-styles", response_model=list[PromptStyleItem], responses=error_responses(500))
    def prompt_styles() -> list[dict[str, str]]:
        from modules.generation.prompts.styles import StyleError, StyleStore

        try:
            store = ctx.styles if ctx.styles is not None else StyleStore([ctx.paths.data_dir / "styles.csv"])
            store.reload()  # pick up edits made outside the studio
            return store.list_styles()
        except (StyleError, OSError, UnicodeDecodeError) as exc:
            raise ApiError(500, f"cannot read styles.csv: {exc}", "StylesUnreadable") from None

    @router.get("/embeddings", response_model=EmbeddingsResponse)
    def embeddings() -> EmbeddingsResponse:
        skipped = {p.stem: EmbeddingItem() for p in _files(ctx.paths.embeddings_dir)}
        return EmbeddingsResponse(loaded={}, skipped=skipped)

    @router.get("/loras", response_model=list[LoraItem])
    def loras() -> list[LoraItem]:
        return [LoraItem(name=p.stem, alias=p.stem, path=str(p), metadata=_lora_metadata(p))
                for p in _files(ctx.paths.lora_dir, (".safetensors", ".pt", ".ckpt"))]

    @router.get("/scripts", response_model=ScriptsList)
    def scripts() -> ScriptsList:
        """Each tab's selectable scripts (``script_name``), then the always-on ones a request can address in
        ``alwayson_scripts``, by lower-cased title as A1111 lists them."""
        from modules.api.sdapi_scripts import scripts_list

        return ScriptsList(**scripts_list(ctx))

    @router.get("/script-info", response_model=list[ScriptInfoItem])
    def script_info() -> list[dict[str, Any]]:
        """Every script per tab with its arguments (label, default value, range, step, choices) in
        ``script_args`` order."""
        from modules.api.sdapi_scripts import script_infos

        return script_infos(ctx)

    @router.get("/cmd-flags", response_model=dict[str, Any])
    def cmd_flags() -> dict[str, Any]:
        return flags_view(ctx.flags)

    @router.get("/memory", response_model=MemoryResponse)
    def memory() -> dict[str, Any]:
        from modules.distributed.status import cluster_view

        actors = cluster_view(ctx)["actors"] if getattr(ctx, "cluster", None) is not None else None
        device = mode = None
        if loaded_module("torch") is not None:  # never import torch just to answer this
            from modules.backends.status import memory_mode_line
            from modules.models.devices import device_choice, device_line

            device = device_line(ctx.flags)
            mode = memory_mode_line(ctx, device_choice(ctx.flags)[0])
        return {**_memory(), "models": ctx.models.slots.report().as_dict(), "cluster": actors, "device": device,
                "memory_mode": mode}

    for name in ("refresh-checkpoints", "refresh-vae", "refresh-loras", "refresh-embeddings"):
        router.add_api_route(f"/{name}", _refresh(ctx, name), methods=["POST"], response_model=None,
                             responses=NULL_RESPONSE, name=name.replace("-", "_"))

    _options_routes(router, ctx)


def _refresh(ctx: "AppContext", name: str) -> Any:
    def refresh() -> None:
        if name == "refresh-checkpoints":
            ctx.catalog.refresh()
        return None  # the other listings are read from disk on every request

    return refresh


def _options_routes(router: APIRouter, ctx: "AppContext") -> None:
    @router.get("/options", response_model=dict[str, Any])
    def get_options() -> dict[str, Any]:
        from modules.scripts.ext_settings import ExtensionOptions

        values = ctx.settings.as_dict()
        if ctx.scripts is not None:  # options extensions declared (ui_settings callbacks)
            values.update(ExtensionOptions.for_context(ctx).values())
        active = ctx.models.active
        if active is not None:
            values["sd_model_checkpoint"] = ctx.catalog.title(active.info)
            values["sd_checkpoint_hash"] = active.sha256 or ""
        return values

    @router.post("/options", response_model=None,
                 responses={**NULL_RESPONSE, **error_responses(400, 404, 422, 429, 500, 507)})
    def set_options(response: Response, changes: dict[str, Any] = Body(...),
                    principal: str | None = Depends(principal_of)) -> None:
        """Validate everything first, then switch the model, then store the settings (see sdapi_options)."""
        from modules.api.sdapi_options import ignored_header, plan_options_change
        from modules.scripts.ext_settings import ExtensionOptionError, ExtensionOptions
        from modules.settings import SettingsError

        extension_options = ExtensionOptions.for_context(ctx) if ctx.scripts is not None else None
        ext: dict[str, Any] = {}
        try:
            if extension_options is not None:
                ext, changes = extension_options.split(changes)
            change = plan_options_change(changes, get_options())
        except (SettingsError, ExtensionOptionError) as exc:
            raise ApiError(400, str(exc), "InvalidSetting") from None
        if change.checkpoint is not None:
            _switch_model(ctx, change.checkpoint, principal)
        if change.settings:
            ctx.settings.update(change.settings)
        if ext and extension_options is not None:
            try:
                extension_options.update(ext)
            except ExtensionOptionError as exc:
                raise ApiError(400, str(exc), "InvalidSetting") from None
        response.headers.update(ignored_header(change))
        return None


def _switch_model(ctx: "AppContext", reference: str, principal: str | None) -> None:
    from modules.api.sdapi_common import sdapi_owner
    from modules.models.errors import ModelLoadError
    from modules.models.load_job import switch_model

    try:
        job = switch_model(ctx, reference, owner=sdapi_owner(principal))
    except ModelLoadError as exc:
        raise ApiError(404, str(exc), "ModelNotFound") from None
    except QueueFullError as exc:
        raise ApiError(429, str(exc), "QueueFull") from None
    except DiskFullError as exc:
        raise ApiError(507, str(exc), "InsufficientStorage") from None
    ctx.queue.wait(job.id)
    if job.state is JobState.FAILED:
        raise ApiError(422 if job.user_error else 500, job.error or "model switch failed", "ModelLoadFailed")
