"""The ControlNet accordion: its widgets fold into sd-webui-controlnet units (validated by the request
model), an enabled unit without a model or image is a readable refusal, and each preprocessor shows
its own threshold sliders."""

from __future__ import annotations

import pytest
from PIL import Image

from modules.generation.controlnet.units import ControlNetUnit
from webui.controlnet_section import ControlNetInputError, collect_units, threshold_updates


def _unit(index: int, **over: object) -> dict[str, object]:
    base = {"enabled": True, "image": Image.new("RGB", (32, 32), (255, 0, 0)), "module": "canny",
            "model": "cn [abcd1234]", "weight": 0.5, "guidance_start": 0.1, "guidance_end": 0.9,
            "processor_res": 256.0, "threshold_a": 50.0, "threshold_b": 150.0, "pixel_perfect": False,
            "control_mode": "ControlNet is more important", "resize_mode": "Just Resize"}
    return {f"cn{index}_{k}": v for k, v in {**base, **over}.items()}


def test_enabled_units_become_request_units_and_other_fields_stay() -> None:
    values = {"prompt": "a red circle", "cfg_scale": 7.0, **_unit(0), **_unit(1, enabled=False)}
    out = collect_units(values, "txt2img")
    assert out["prompt"] == "a red circle" and out["cfg_scale"] == 7.0
    assert not any(key.startswith("cn") for key in out if key != "controlnet_units")
    (unit,) = out["controlnet_units"]
    parsed = ControlNetUnit.model_validate(unit)
    assert parsed.is_active and parsed.module == "canny" and parsed.weight == 0.5 and parsed.processor_res == 256
    assert parsed.control_mode == "ControlNet is more important" and parsed.image  # base64 PNG
    assert "controlnet_units" not in collect_units({"prompt": "x", **_unit(0, enabled=False)}, "txt2img")


def test_refusals_are_readable() -> None:
    with pytest.raises(ControlNetInputError, match="unit 0 is enabled but has no model"):
        collect_units(_unit(0, model="None"), "txt2img")
    with pytest.raises(ControlNetInputError, match="unit 1 needs a control image"):
        collect_units(_unit(1, image=None), "txt2img")
    # in img2img a unit without an image uses the init image
    assert collect_units(_unit(0, image=None), "img2img")["controlnet_units"][0]["image"] is None


def test_each_preprocessor_shows_its_own_sliders() -> None:
    res, a, b = threshold_updates("canny")
    assert res["visible"] and a["label"] == "Canny Low Threshold" and a["value"] == 100 and b["maximum"] == 255
    res, a, b = threshold_updates("invert")
    assert not res["visible"] and not a["visible"] and a["value"] == -1 and not b["visible"]
    res, a, b = threshold_updates("no such module")
    assert not a["visible"] and not b["visible"]
