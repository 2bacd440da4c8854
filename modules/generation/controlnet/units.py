"""ControlNet units as sd-webui-controlnet's API takes them, and their A1111 infotext.

Field names and values are the extension's (``external_code.ControlNetUnit`` / the webuiapi client's unit
dict): ``image`` (base64 / data URI, or the legacy ``{"image": ..., "mask": ...}`` dict), ``mask``
(``mask_image``), ``module``, ``model``, ``weight``, ``resize_mode`` ("Just Resize" / "Crop and Resize" /
"Resize and Fill", legacy ints 0/1/2 and the old "Scale to Fit (Inner Fit)" / "Envelope (Outer Fit)"),
``low_vram`` (accepted, no effect), ``processor_res``, ``threshold_a``, ``threshold_b`` (-1 = the module's
default), ``guidance_start``, ``guidance_end``, ``control_mode`` ("Balanced" / "My prompt is more important"
/ "ControlNet is more important", legacy ints 0/1/2), ``pixel_perfect``, ``hr_option`` ("Both" /
"Low res only" / "High res only") and ``enabled``; the extension's old keys ``guidance``, ``lowvram`` and
``input_image`` are renamed as it does. Unknown keys (e.g. the removed ``guessmode``) are ignored, as the
extension's API does. A ``mask`` with strokes is used *as the control map* (module forced to "none"),
as the extension does with a non-inpaint unit's mask.

Over the A1111 API the units come as ``alwayson_scripts = {"ControlNet": {"args": [unit, ...]}}``
(key matched case-insensitively): :func:`units_from_alwayson`.
"""

from __future__ import annotations

from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from modules.generation.validation import InvalidRequestError

ResizeMode = Literal["Just Resize", "Crop and Resize", "Resize and Fill"]
ControlMode = Literal["Balanced", "My prompt is more important", "ControlNet is more important"]
HrOption = Literal["Both", "Low res only", "High res only"]

RESIZE_MODE_NAMES: tuple[str, ...] = ("Just Resize", "Crop and Resize", "Resize and Fill")
CONTROL_MODE_NAMES: tuple[str, ...] = ("Balanced", "My prompt is more important", "ControlNet is more important")
_LEGACY_RESIZE = {"scale to fit (inner fit)": "Crop and Resize", "envelope (outer fit)": "Resize and Fill",
                  "inner fit (scale to fit)": "Crop and Resize", "outer fit (shrink to fit)": "Resize and Fill",
                  "just resize (latent upscale)": "Just Resize"}
#: the extension's ``ext_compat_keys``
_COMPAT_KEYS = {"guidance": "guidance_end", "lowvram": "low_vram", "input_image": "image"}


def _by_name_or_index(value: Any, names: tuple[str, ...], what: str, legacy: Mapping[str, str] | None = None) -> str:
    if isinstance(value, bool):
        raise ValueError(f"{what} must be one of {', '.join(names)}")
    if isinstance(value, (int, float)) and float(value).is_integer() and 0 <= int(value) < len(names):
        return names[int(value)]
    if what == "resize_mode" and isinstance(value, int) and value >= len(names):
        return names[0]  # 3 is img2img's "Just resize (latent upscale)"; the extension falls back to Just Resize
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit() and int(text) < len(names):
            return names[int(text)]
        for name in names:
            if text.lower() == name.lower():
                return name
        if legacy and text.lower() in legacy:
            return legacy[text.lower()]
    raise ValueError(f"{what} must be one of {', '.join(repr(n) for n in names)} (or 0-{len(names) - 1})")


class ControlNetUnit(BaseModel):
    """One ControlNet unit (sd-webui-controlnet field names and defaults of its API)."""

    model_config = ConfigDict(extra="ignore")

    enabled: bool = True
    module: str = "none"
    model: str = "None"
    weight: float = Field(1.0, ge=0.0, le=2.0)
    image: str | None = Field(None, description="base64 image; None in img2img: the init image")
    mask: str | None = Field(None, description="base64 image: strokes drawn on it are used as the control map")
    resize_mode: ResizeMode = "Crop and Resize"
    low_vram: bool = False
    processor_res: int = Field(-1, ge=-1, le=4096, description="-1: the module's default (512)")
    threshold_a: float = -1.0
    threshold_b: float = -1.0
    guidance_start: float = Field(0.0, ge=0.0, le=1.0)
    guidance_end: float = Field(1.0, ge=0.0, le=1.0)
    control_mode: ControlMode = "Balanced"
    pixel_perfect: bool = False
    hr_option: HrOption = "Both"

    @model_validator(mode="before")
    @classmethod
    def _legacy_fields(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = {_COMPAT_KEYS.get(k, k): v for k, v in data.items()}
        image = data.get("image")
        if isinstance(image, dict):  # legacy {"image": b64, "mask": b64}
            data["image"] = image.get("image")
            data.setdefault("mask", image.get("mask"))
        if data.get("mask") is None and data.get("mask_image") is not None:
            data["mask"] = data["mask_image"]
        for key in ("module", "model"):
            if data.get(key) is None:
                data.pop(key, None)
        return data

    @field_validator("resize_mode", mode="before")
    @classmethod
    def _resize_mode(cls, value: Any) -> str:
        return _by_name_or_index(value, RESIZE_MODE_NAMES, "resize_mode", _LEGACY_RESIZE)

    @field_validator("control_mode", mode="before")
    @classmethod
    def _control_mode(cls, value: Any) -> str:
        return _by_name_or_index(value, CONTROL_MODE_NAMES, "control_mode")

    @field_validator("hr_option", mode="before")
    @classmethod
    def _hr_option(cls, value: Any) -> str:
        return _by_name_or_index(value, ("Both", "Low res only", "High res only"), "hr_option")

    @model_validator(mode="after")
    def _guidance_order(self) -> "ControlNetUnit":
        if self.guidance_start > self.guidance_end:
            raise ValueError("guidance_start must not be greater than guidance_end")
        return self

    @property
    def is_active(self) -> bool:
        """Enabled and naming a model (a unit with model "None" only preprocesses, as in the extension)."""
        return self.enabled and self.model.strip() not in ("", "None", "none")


def _issue(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "unit"
    return f"{where}: {first.get('msg', 'invalid')}"


def parse_unit(data: Any, index: int = 0) -> ControlNetUnit:
    """A unit from a dict (or a ControlNetUnit); InvalidRequestError naming the unit and field."""
    if isinstance(data, ControlNetUnit):
        return data
    if not isinstance(data, Mapping):
        raise InvalidRequestError(f"ControlNet unit {index}: expected an object, got {type(data).__name__}")
    try:
        return ControlNetUnit.model_validate(dict(data))
    except ValidationError as exc:
        raise InvalidRequestError(f"ControlNet unit {index}: {_issue(exc)}") from None


def units_from_alwayson(alwayson_scripts: Mapping[str, Any] | None) -> list[ControlNetUnit]:
    """The units of ``alwayson_scripts["ControlNet"]["args"]`` (key any case; a bare list of units too).

    Non-object args (the extension also tolerates ``null``/booleans there) are skipped.
    """
    if not alwayson_scripts:
        return []
    entry = next((v for k, v in alwayson_scripts.items() if str(k).strip().lower() == "controlnet"), None)
    if entry is None:
        return []
    args = entry.get("args", []) if isinstance(entry, Mapping) else entry
    if not isinstance(args, (list, tuple)):
        raise InvalidRequestError("alwayson_scripts.ControlNet.args must be a list of unit objects")
    return [parse_unit(arg, i) for i, arg in enumerate(args) if isinstance(arg, (Mapping, ControlNetUnit))]


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def unit_infotext(unit: ControlNetUnit, *, module: str, model_title: str, processor_res: int,
                  threshold_a: float, threshold_b: float) -> str:
    """The value of ``ControlNet N`` (build_infotext quotes it, as it contains ',' and ':')."""
    return ", ".join([
        f"Module: {module}", f"Model: {model_title}", f"Weight: {float(unit.weight)}",
        f"Resize Mode: {unit.resize_mode}", f"Processor Res: {processor_res}",
        f"Threshold A: {_number(threshold_a)}", f"Threshold B: {_number(threshold_b)}",
        f"Guidance Start: {float(unit.guidance_start)}", f"Guidance End: {float(unit.guidance_end)}",
        f"Pixel Perfect: {unit.pixel_perfect}", f"Control Mode: {unit.control_mode}",
    ])
