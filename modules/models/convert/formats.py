"""Checkpoint format conversions through the studio's own loader, offline:

* :func:`folder_to_single_file`: a diffusers folder -> one ``.safetensors`` in the original LDM/SGM layout
  (A1111, ComfyUI and ``from_single_file`` read it), with ``atelier.components`` and the prediction type in
  its metadata so the studio loads back the same networks;
* :func:`single_file_to_folder`: a single file -> a diffusers folder (the loaded pipeline's
  ``save_pretrained``, safetensors only).

Weights keep their dtype (read from the source's header) unless a dtype is asked for. FLUX and other
non-UNet families have no LDM single-file layout here and are refused with a message.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from modules.models.convert.pickle_to_safetensors import ConversionError

_HEADER_DTYPES = {"F16": "float16", "BF16": "bfloat16", "F32": "float32"}
NETWORKS = ("unet", "vae", "text_encoder", "text_encoder_2")


def _first_weights(path: Path) -> Path | None:
    if path.is_file():
        return path if path.suffix.lower() == ".safetensors" else None
    for name in ("unet", "transformer"):
        found = sorted((path / name).glob("*.safetensors")) if (path / name).is_dir() else []
        if found:
            return found[0]
    return None


def source_dtype(path: Path) -> str:
    """The floating dtype most of the source's (UNet) weights have; float32 when it cannot be told."""
    from collections import Counter

    from modules.models.errors import ModelLoadError
    from modules.models.header import read_safetensors_header

    weights = _first_weights(path)
    if weights is None:
        return "float32"
    try:
        counts = Counter(t.dtype for t in read_safetensors_header(weights).tensors.values()
                         if t.dtype in _HEADER_DTYPES)
    except ModelLoadError:
        return "float32"
    return _HEADER_DTYPES[counts.most_common(1)[0][0]] if counts else "float32"


def _load(path: Path, cache_dir: Path, dtype: str | None, allow_pickle: bool) -> Any:
    from modules.models.errors import ModelLoadError
    from modules.models.loader import LoadOptions, load_model

    try:
        return load_model(path, LoadOptions(device="cpu", dtype=dtype or source_dtype(path), cache_dir=cache_dir,
                                            allow_pickle=allow_pickle))
    except ModelLoadError as exc:
        raise ConversionError(f"cannot read {path.name}: {exc.reason}") from None


def _configs(pipe: Any) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name in NETWORKS:
        module = getattr(pipe, name, None)
        if module is None:
            continue
        config = module.config
        out[name] = dict(config) if name in ("unet", "vae") else config.to_dict()
    return out


def check_layout(path: Path, allow_pickle: bool = False) -> None:
    """Refuse, before anything is loaded, a model whose family has no LDM single-file layout (FLUX, ...)."""
    from modules.models.detect import detect_checkpoint
    from modules.models.errors import ModelLoadError

    try:
        family = detect_checkpoint(path, allow_pickle=allow_pickle).family
    except ModelLoadError as exc:
        raise ConversionError(f"cannot read {path.name}: {exc.reason}") from None
    if family.architecture != "ldm-unet":
        raise ConversionError(f"{path.name} is a {family.label} model: only SD 1.x, SD 2.x and SDXL models are "
                              f"converted between a diffusers folder and a single file")


def folder_to_single_file(folder: Path, target: Path, *, cache_dir: Path, dtype: str | None = None,
                          on_progress: Callable[[int], None] = lambda step: None) -> Path:
    """Load the diffusers ``folder`` and write it as one LDM-layout ``target`` safetensors file."""
    from modules.models.convert.ldm import components_metadata, diffusers_to_ldm, save_ldm_checkpoint

    check_layout(folder)
    loaded = _load(folder, cache_dir, dtype, allow_pickle=False)
    on_progress(1)
    family = loaded.family
    pipe = loaded.pipeline
    states = {name: getattr(pipe, name).state_dict() for name in NETWORKS if getattr(pipe, name, None) is not None}
    try:
        state = diffusers_to_ldm(states["unet"], states["vae"], states.get("text_encoder"),
                                 unet_config=pipe.unet.config, family=family.id,
                                 text_encoder_2_sd=states.get("text_encoder_2"))
    except (KeyError, ValueError) as exc:
        raise ConversionError(f"{folder.name} cannot be laid out as a single file: {exc}") from None
    metadata = {**components_metadata(family, _configs(pipe)), "format": "pt",
                "modelspec.prediction_type": "v" if loaded.prediction_type == "v_prediction" else "epsilon",
                "atelier_converted_from": folder.name, "atelier_operation": "to_single_file"}
    on_progress(2)
    return save_ldm_checkpoint(target, state, metadata)


def single_file_to_folder(source: Path, target: Path, *, cache_dir: Path, dtype: str | None = None,
                          allow_pickle: bool = False, on_progress: Callable[[int], None] = lambda step: None) -> Path:
    """Load the single file ``source`` and save its pipeline as the diffusers folder ``target`` (written
    beside it under a temporary name, then renamed: never half a folder under the final name)."""
    check_layout(source, allow_pickle)
    loaded = _load(source, cache_dir, dtype, allow_pickle)
    on_progress(1)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        loaded.pipeline.save_pretrained(str(temp), safe_serialization=True)
        temp.chmod(0o755)
        temp.rename(target)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    on_progress(2)
    return target
