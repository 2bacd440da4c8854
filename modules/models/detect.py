"""Recognise a checkpoint's family from its safetensors header, or a diffusers folder from its JSON files.

All rules are data in :mod:`modules.models.families`; file names and sizes are never consulted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Iterable, Mapping

from modules.models.checkpoint import read_shapes
from modules.models.errors import ModelLoadError
from modules.models.families import FAMILIES, FolderCondition, KeyRule, ModelFamily
from modules.models.prediction import declared_prediction, normalise_prediction

Shapes = Mapping[str, tuple[int, ...]]
#: Human names for key prefixes, used to explain an unknown architecture.
_PART_HINTS = (
    ("model.diffusion_model.input_blocks.", "LDM UNet"), ("first_stage_model.", "VAE"),
    ("cond_stage_model.", "text encoder"), ("conditioner.", "SDXL conditioner"),
    ("double_blocks.", "FLUX transformer"), ("encoder.down.", "bare VAE"), ("lora_", "LoRA"),
)


@dataclass(frozen=True)
class Detection:
    """Family + variant facts (``inpaint``, ``prediction_type``, ``prediction_source``, ...) + why."""

    family: ModelFamily
    variant: Mapping[str, object]
    reason: str


def rule_matches(rule: KeyRule, keys: Iterable[str]) -> bool:
    """Evaluate a header rule over key names (patterns are prefixes)."""
    keys = tuple(keys)

    def seen(pattern: str) -> bool:
        return any(key.startswith(pattern) for key in keys)

    return (
        all(seen(p) for p in rule.all_of)
        and all(any(seen(p) for p in group) for group in rule.any_of)
        and not any(seen(p) for p in rule.none_of)
    )


def detect_checkpoint(path: Path, *, allow_pickle: bool = False, prediction_type: str | None = None) -> Detection:
    """Detect a single file (header only) or a diffusers folder; ModelLoadError when not recognised."""
    path = Path(path)
    if path.is_dir():
        return detect_folder(path, prediction_type=prediction_type)
    if not path.is_file():
        raise ModelLoadError(path, "file not found")
    shapes, metadata = read_shapes(path, allow_pickle=allow_pickle)
    return detect_from_shapes(path, shapes, metadata, prediction_type=prediction_type)


def detect_from_shapes(
    path: Path, shapes: Shapes, metadata: Mapping[str, str], *, prediction_type: str | None = None
) -> Detection:
    """Apply every family's header rule; SD 2.x candidates are split by prediction type."""
    matches = [family for family in FAMILIES if rule_matches(family.header_rule, shapes)]
    if not matches:
        raise ModelLoadError(path, _unknown_reason(shapes))
    variant: dict[str, object] = {
        rule.name: any(shapes.get(key, ())[rule.dim:rule.dim + 1] == (rule.equals,) for key in rule.keys)
        for family in matches for rule in family.variant_rules
    }
    variant["has_ema"] = any(key.startswith("model_ema.") for key in shapes)
    # ComfyUI's convention for v-prediction / zero-terminal-SNR fine-tunes: empty marker tensors in the file
    variant["zero_terminal_snr"] = ZTSNR_MARKER in shapes
    marker = "v_prediction" if V_PRED_MARKER in shapes else None
    return _choose(path, matches, variant, metadata, prediction_type, "header keys", marker_prediction=marker)


_DECLARABLE = ("epsilon", "v_prediction")
V_PRED_MARKER, ZTSNR_MARKER = "v_pred", "ztsnr"


def _declared(
    path: Path, metadata: Mapping[str, str], override: str | None, folder_prediction: str | None,
    marker_prediction: str | None,
) -> tuple[str | None, str | None]:
    """The prediction type the user or the files declare, in order: override, metadata, sidecar (see
    `declared_prediction`), a diffusers folder's scheduler_config, ComfyUI's marker key; (None, None) if none."""
    prediction, source = declared_prediction(path, metadata, override)
    for candidate, where in ((folder_prediction, "scheduler_config"), (marker_prediction, "marker key")):
        if prediction is None and candidate is not None:
            prediction, source = candidate, where
    return prediction, source


def _choose(
    path: Path, matches: list[ModelFamily], variant: dict[str, object], metadata: Mapping[str, str],
    override: str | None, how: str, folder_prediction: str | None = None, marker_prediction: str | None = None,
) -> Detection:
    """One family from the candidates, resolving prediction type where the candidates need it."""
    if len(matches) > 1 and not all(family.prediction_probe for family in matches):
        raise ModelLoadError(path, f"ambiguous architecture (matches {', '.join(f.id for f in matches)})")
    family = matches[0]
    if family.prediction_probe:
        prediction, source = _declared(path, metadata, override, folder_prediction, marker_prediction)
        if prediction is None:
            prediction, source = "epsilon", "default"
            variant["prediction_probe"] = True
        family = next((f for f in matches if f.prediction_type == prediction), family)
        variant.update(prediction_type=prediction, prediction_source=source)
    elif family.prediction_type in _DECLARABLE:
        # SD 1.x / SDXL are epsilon unless the file says otherwise (v-prediction fine-tunes declare it in
        # their metadata or an A1111 sidecar, or the user overrides); no probe, which A1111 runs for SD 2.x only.
        prediction, source = _declared(path, metadata, override, folder_prediction, marker_prediction)
        if prediction is None:
            prediction, source = family.prediction_type, "family"
        variant.update(prediction_type=prediction, prediction_source=source)
    else:
        variant.update(prediction_type=family.prediction_type, prediction_source="family")
    reason = f"{family.label} by {how} (prediction {variant['prediction_type']}: {variant['prediction_source']})"
    return Detection(family=family, variant=MappingProxyType(variant), reason=reason)


def _unknown_reason(shapes: Shapes) -> str:
    parts = [name for prefix, name in _PART_HINTS if any(key.startswith(prefix) for key in shapes)]
    sample = ", ".join(f"'{key}'" for key in list(shapes)[:3]) or "none"
    found = f"found {', '.join(parts)}" if parts else "no known model parts"
    return f"unknown architecture ({found}; {len(shapes)} tensors, e.g. {sample})"


def _read_json(path: Path, cache: dict[str, object]) -> object:
    key = str(path)
    if key not in cache:
        try:
            cache[key] = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelLoadError(path, f"invalid JSON ({exc})") from exc
    return cache[key]


def _is_component(value: object) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)


def _condition_holds(folder: Path, condition: FolderCondition, cache: dict[str, object]) -> bool:
    data = _read_json(folder / condition.file, cache)
    value = data.get(condition.key) if isinstance(data, dict) else None
    if condition.present is not None and _is_component(value) != condition.present:
        return False
    return not condition.equals or value in condition.equals


def detect_folder(path: Path, *, prediction_type: str | None = None) -> Detection:
    """Detect a diffusers folder from ``model_index.json`` and component configs."""
    cache: dict[str, object] = {}
    index = _read_json(path / "model_index.json", cache)
    if not isinstance(index, dict):
        raise ModelLoadError(path, "folder has no model_index.json (not a diffusers pipeline folder)")
    class_name = index.get("_class_name")
    matches = [
        family for family in FAMILIES
        if class_name in family.folder_rule.pipeline_classes
        and all(_condition_holds(path, c, cache) for c in family.folder_rule.conditions)
    ]
    if not matches:
        raise ModelLoadError(path, f"unknown architecture (pipeline class '{class_name}' with these components)")
    variant: dict[str, object] = {}
    for family in matches:
        for rule in family.folder_rule.variants:
            data = _read_json(path / rule.file, cache)
            variant[rule.name] = isinstance(data, dict) and data.get(rule.key) == rule.equals
    scheduler = _read_json(path / "scheduler" / "scheduler_config.json", cache)
    declared = scheduler.get("prediction_type") if isinstance(scheduler, dict) else None
    return _choose(
        path, matches, variant, {}, prediction_type, f"model_index '{class_name}'",
        folder_prediction=normalise_prediction(declared) if declared else None,
    )
