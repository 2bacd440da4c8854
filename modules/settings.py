"""User settings (A1111's ``config.json`` options), persisted to the data dir.

Only the options Atelier actually honours are declared; each has a type, a default and a
description. Writes are atomic (temp file + ``os.replace``) so a crash never leaves a half file.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

log = logging.getLogger(__name__)


class SettingsError(ValueError):
    """A settings change that cannot be applied (unknown key or invalid value)."""


class Settings(BaseModel):
    """Every option a user can change; the names are A1111's where A1111 has one."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    sd_model_checkpoint: str = Field("", description="Title of the checkpoint to use")
    sd_checkpoint_hash: str = Field("", description="SHA-256 of the loaded checkpoint (read only)")
    CLIP_stop_at_last_layers: int = Field(1, ge=1, le=12, description="Clip skip")
    sd_vae: str = Field("Automatic", description='VAE: "Automatic", "None" or a file name in models/VAE')
    samples_save: bool = Field(True, description="Always save generated images")
    samples_format: Literal["png"] = Field("png", description="File format for images")
    enable_pnginfo: bool = Field(True, description="Write infotext into PNG files")
    add_model_hash_to_info: bool = Field(True, description="Add model hash to infotext")
    add_model_name_to_info: bool = Field(True, description="Add model name to infotext")
    add_version_to_infotext: bool = Field(True, description="Add program version to infotext")
    live_previews_enable: bool = Field(True, description="Show live previews while generating")
    show_progress_every_n_steps: int = Field(5, ge=-1, le=100,
                                             description="Live preview every N steps (-1: only at the end)")
    sd_prediction_type: Literal["auto", "epsilon", "v_prediction"] = Field(
        "auto", description="Override the prediction type of SD 1.x, SD 2.x and SDXL checkpoints")
    memory_mode: Literal["none", "model_offload", "sequential_offload", "auto"] = Field(
        "none", description="GPU memory mode: none, model offload (--medvram), sequential offload (--lowvram), or "
                            "auto by free memory; on a CPU there is nothing to offload")
    vae_slicing: bool = Field(False, description="Decode a batch's images one at a time (less memory)")
    vae_tiling: bool = Field(False, description="Decode large images in tiles (much less memory; seams are blended)")
    attention_slicing: bool = Field(False, description="Compute attention in slices (less memory, slower)")
    sd_backend: Literal["torch", "onnx", "openvino"] = Field(
        "torch", description="Backend of the UNet: PyTorch, ONNX Runtime or OpenVINO (exported once per model, "
                             "checked against PyTorch on first use; LoRA and ControlNet need PyTorch); --backend "
                             "overrides it")
    openvino_precision: Literal["f32", "bf16"] = Field(
        "f32", description="OpenVINO inference precision (bf16 where the CPU has it: faster, less exact)")
    backend_by_model: dict[str, Literal["torch", "onnx", "openvino"]] = Field(
        default_factory=dict, description="A backend per checkpoint (file name -> backend), over sd_backend")
    unet_quantization: Literal["none", "int8_weights", "int8_dynamic"] = Field(
        "none", description="Quantize the UNet/transformer at load (torchao; PyTorch backend only): int8 weights "
                            "(less memory), or int8 weights and activations (fastest on GPUs with int8 units); the "
                            "model is loaded again when this changes; LoRA is merged into a quantized UNet's "
                            "dequantized weights for the job")
    torch_compile: bool = Field(False, description="Compile the UNet/transformer with torch.compile at load (PyTorch "
                                                   "backend only; the first generation compiles: minutes on a CPU)")
    torch_compile_mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = Field(
        "default", description="torch.compile mode (reduce-overhead and max-autotune: CUDA graphs, GPU only)")
    token_merging_ratio: float = Field(
        0.0, ge=0.0, le=0.9, description="Token merging ratio (ToMe): the share of image tokens merged before the "
                                          "UNet's full-resolution self-attention (0: off; 0.3-0.5 saves time at large "
                                          "sizes and changes the image a little; PyTorch backend only)")
    token_merging_ratio_img2img: float = Field(
        0.0, ge=0.0, le=0.9, description="Token merging ratio for img2img (0: token_merging_ratio)")
    token_merging_ratio_hr: float = Field(
        0.0, ge=0.0, le=0.9, description="Token merging ratio for the hires fix pass (0: token_merging_ratio)")
    randn_source: Literal["GPU", "CPU", "NV"] = Field(
        "CPU", description="Random number source of the initial and sampler noise (A1111's option): CPU; GPU, "
                           "the numbers A1111's default makes on an NVIDIA GPU (computed here on any device); NV, "
                           "the same numbers under A1111's other name. A request or a pasted infotext (RNG) "
                           "chooses its own")
    send_seed: bool = Field(True, description="Send the seed when sending parameters to another tab")
    send_size: bool = Field(True, description="Send the size when sending parameters to another tab")
    notification_audio: bool = Field(False, description="Play a sound in the page when a generation ends")
    notification_browser: bool = Field(
        False, description="Show a browser notification when a generation ends while the page is not in front "
                           "(the browser asks for permission at the next Generate)")
    min_free_space_mb: int = Field(64, ge=0, le=1_000_000,
                                   description="Refuse new jobs and hold waiting ones while less than this many MB "
                                               "are free where jobs write (0: off; --min-free-space-mb overrides)")
    # image understanding (modules/understanding/services.py); the API key is never a setting (see vlm_api_key_env)
    understanding_backend: str = Field(
        "default", max_length=200, json_schema_extra={"section": "Image understanding"},
        description="Backend of understanding tasks that name none: default (offline), remote, ocr, local:<folder>")
    # per task, over understanding_backend (empty: that one); a request that names a backend still wins
    understanding_backend_caption: str = Field(
        "", max_length=200, json_schema_extra={"section": "Image understanding"},
        description="Backend of Caption requests that name none (empty: understanding_backend)")
    understanding_backend_ask: str = Field(
        "", max_length=200, json_schema_extra={"section": "Image understanding"},
        description="Backend of Ask requests that name none (empty: understanding_backend)")
    understanding_backend_extract: str = Field(
        "", max_length=200, json_schema_extra={"section": "Image understanding"},
        description="Backend of Extract requests that name none (empty: understanding_backend)")
    understanding_backend_chat: str = Field(
        "", max_length=200, json_schema_extra={"section": "Image understanding"},
        description="Model the Chat sub-tab starts on: default, ocr or local:<folder> (empty: understanding_backend; "
                    "a chat request always names its model)")
    understanding_backend_check: str = Field(
        "", max_length=200, json_schema_extra={"section": "Image understanding"},
        description="Backend of Check requests that name none (empty: understanding_backend)")
    understanding_backend_batch: str = Field(
        "", max_length=200, json_schema_extra={"section": "Image understanding"},
        description="Backend of Batch captioning requests that name none (empty: understanding_backend)")
    # gallery search (modules/understanding/search)
    gallery_search_model: str = Field(
        "", max_length=300, json_schema_extra={"section": "Image understanding"},
        description="Model that indexes and searches the gallery: an image classifier of models/classifier or "
                    "clip:<folder of models/CLIP> (searches by text too); empty: the offline default")
    gallery_index_on_save: bool = Field(True, json_schema_extra={"section": "Image understanding"},
                                        description="Once the gallery is indexed, add new images to the index as "
                                                    "they are saved (in the background)")
    vlm_api_base_url: str = Field("", max_length=500, json_schema_extra={"section": "Image understanding"},
                                  description="OpenAI-compatible service for image understanding "
                                              "(e.g. https://openrouter.ai/api/v1)")
    vlm_api_model: str = Field("", max_length=200, json_schema_extra={"section": "Image understanding"},
                               description="Model id at that service (e.g. baidu/ernie-4.5-vl-28b-a3b)")
    vlm_api_key_env: str = Field("ATELIER_VLM_API_KEY", max_length=100, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$|^$",
                                 json_schema_extra={"section": "Image understanding"},
                                 description="Environment variable holding its API key (else <data dir>/vlm_api_key.txt)")
    vlm_api_timeout_s: int = Field(120, ge=1, le=3600, json_schema_extra={"section": "Image understanding"},
                                   description="Seconds to wait for the service's answer")
    # the Settings tab, its sections and the quicksettings bar (modules/settings_layout.py)
    quicksettings_list: list[str] = Field(
        ["sd_model_checkpoint", "sd_vae", "CLIP_stop_at_last_layers"],
        description="Quicksettings list (settings shown at the top of the page; applies when the page is built)")
    return_grid: bool = Field(True, description="Show grid in gallery")
    grid_save: bool = Field(True, description="Always save all generated image grids")
    theme: Literal["system", "light", "dark"] = Field(
        "system", description="Theme of the page (system: follow the browser; --theme overrides)")
    # --ray (modules/distributed/model_transfer.py, docs/scaling.md)
    ray_model_transfer: Literal["shared_path", "object_store"] = Field(
        "shared_path", json_schema_extra={"section": "System"},
        description="With --ray, how actors get checkpoints: shared_path (every node reads the data dir by the same "
                    "path) or object_store (sent once through Ray's object store into each node's cache)")
    ray_training: Literal["host", "actors"] = Field(
        "host", json_schema_extra={"section": "System"},
        description="With --ray, where LoRA and embedding training run: host (the studio's own device) or actors (a Ray actor; "
                    "needs the data dir at the same path on every node, checked at submit)")

    @property
    def preview_every(self) -> int:
        """Steps between two live previews (0: none while sampling)."""
        if not self.live_previews_enable or self.show_progress_every_n_steps <= 0:
            return 0
        return self.show_progress_every_n_steps


READ_ONLY = frozenset({"sd_checkpoint_hash"})


class SettingsStore:
    """Thread-safe holder of :class:`Settings` backed by a JSON file."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._extra: dict[str, Any] = {}  # the file's other keys: extension options (modules/scripts/ext_settings.py)
        self._settings = self._load()

    def _load(self) -> Settings:
        if not self._path.exists():
            return Settings()
        try:
            raw = json.loads(self._path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            log.warning("Settings file %s is unreadable (%s); using defaults", self._path, exc)
            return Settings()
        known = {k: v for k, v in raw.items() if k in Settings.model_fields} if isinstance(raw, dict) else {}
        self._extra = {k: v for k, v in raw.items() if k not in Settings.model_fields} if isinstance(raw, dict) else {}
        try:
            return Settings(**known)
        except ValidationError:
            settings = Settings()
            for key, value in known.items():  # keep every value that is still valid
                try:
                    setattr(settings, key, value)
                except ValidationError:
                    log.warning("Ignoring invalid saved setting %s=%r", key, value)
            return settings

    @property
    def current(self) -> Settings:
        with self._lock:
            return self._settings.model_copy()

    def as_dict(self) -> dict[str, Any]:
        return self.current.model_dump()

    def update(self, changes: dict[str, Any], *, allow_read_only: bool = False) -> Settings:
        """Validate and apply ``changes`` all-or-nothing, then persist."""
        unknown = sorted(set(changes) - set(Settings.model_fields))
        if unknown:
            raise SettingsError(f"unknown setting(s): {', '.join(unknown)}")
        blocked = sorted(set(changes) & READ_ONLY) if not allow_read_only else []
        if blocked:
            raise SettingsError(f"read-only setting(s): {', '.join(blocked)}")
        with self._lock:
            merged = {**self._settings.model_dump(), **changes}
            try:
                new = Settings(**merged)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                raise SettingsError(f"invalid value for {where}: {first['msg']}") from None
            self._settings = new
            self._write(new)
            return new.model_copy()

    def extra(self) -> dict[str, Any]:
        """The settings file's keys that are not :class:`Settings` fields (extension options), as stored."""
        with self._lock:
            return dict(self._extra)

    def update_extra(self, changes: dict[str, Any]) -> None:
        """Store extension options beside the settings (their owner validates them:
        :mod:`modules.scripts.ext_settings`); a :class:`Settings` key is refused here."""
        clash = sorted(set(changes) & set(Settings.model_fields))
        if clash:
            raise SettingsError(f"not an extension option: {', '.join(clash)}")
        with self._lock:
            self._extra.update(changes)
            self._write(self._settings)

    def _write(self, settings: Settings) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({**self._extra, **settings.model_dump()}, indent=2), encoding="utf-8")
        os.replace(tmp, self._path)
