"""ControlNet units: sd-webui-controlnet field names, legacy values, the alwayson_scripts parser, infotext."""

from __future__ import annotations

import pytest

from modules.generation.controlnet.units import ControlNetUnit, parse_unit, unit_infotext, units_from_alwayson
from modules.generation.validation import InvalidRequestError
from modules.images.infotext import build_infotext, parse_infotext


def test_defaults_and_legacy_values() -> None:
    unit = ControlNetUnit()
    assert (unit.module, unit.model, unit.weight, unit.resize_mode, unit.control_mode) == \
        ("none", "None", 1.0, "Crop and Resize", "Balanced")
    assert not unit.is_active
    legacy = parse_unit({"module": "canny", "model": "m", "resize_mode": 2, "control_mode": "1",
                         "image": {"image": "AAA", "mask": "BBB"}, "hr_option": 1, "guessmode": False})
    assert legacy.resize_mode == "Resize and Fill" and legacy.control_mode == "My prompt is more important"
    assert legacy.image == "AAA" and legacy.mask == "BBB" and legacy.hr_option == "Low res only"
    assert parse_unit({"resize_mode": "Envelope (Outer Fit)"}).resize_mode == "Resize and Fill"
    assert parse_unit({"resize_mode": "scale to fit (inner fit)"}).resize_mode == "Crop and Resize"
    assert parse_unit({"guessmode": True}).control_mode == "Balanced"  # removed in the extension: ignored
    compat = parse_unit({"guidance": 0.4, "lowvram": True, "input_image": "IMG", "resize_mode": 3})
    assert (compat.guidance_end, compat.low_vram, compat.image, compat.resize_mode) == (0.4, True, "IMG", "Just Resize")
    assert parse_unit({"resize_mode": "Outer Fit (Shrink to Fit)"}).resize_mode == "Resize and Fill"
    assert parse_unit({"control_mode": 2, "mask_image": "M"}).mask == "M"
    assert parse_unit({"model": "x [abcd1234]", "enabled": True, "unknown_key": 1}).is_active


def test_invalid_units_name_the_field() -> None:
    with pytest.raises(InvalidRequestError, match=r"ControlNet unit 3: resize_mode: .*'Just Resize'"):
        parse_unit({"resize_mode": "Stretch"}, 3)
    with pytest.raises(InvalidRequestError, match="unit 0: .*guidance_start must not be greater"):
        parse_unit({"guidance_start": 0.8, "guidance_end": 0.2})
    with pytest.raises(InvalidRequestError, match="unit 1: weight"):
        parse_unit({"weight": 5}, 1)
    with pytest.raises(InvalidRequestError, match="expected an object"):
        parse_unit("canny", 0)


def test_units_from_alwayson() -> None:
    scripts = {"controlnet": {"args": [{"module": "canny", "model": "a"}, None, True, {"enabled": False}]},
               "ADetailer": {"args": [False]}}
    units = units_from_alwayson(scripts)
    assert [u.module for u in units] == ["canny", "none"] and not units[1].enabled
    assert units_from_alwayson({"ControlNet": [{"model": "b"}]})[0].model == "b"
    assert units_from_alwayson({"ControlNet": {"args": []}}) == []
    assert units_from_alwayson({}) == [] and units_from_alwayson(None) == []
    with pytest.raises(InvalidRequestError, match="must be a list"):
        units_from_alwayson({"ControlNet": {"args": "x"}})


def test_infotext_entry_is_quoted_and_parses_back() -> None:
    unit = parse_unit({"module": "canny", "model": "cn", "resize_mode": 1})
    value = unit_infotext(unit, module="canny", model_title="cn [0123abcd]", processor_res=512,
                          threshold_a=100, threshold_b=200)
    assert value == ("Module: canny, Model: cn [0123abcd], Weight: 1.0, Resize Mode: Crop and Resize, "
                     "Processor Res: 512, Threshold A: 100, Threshold B: 200, Guidance Start: 0.0, "
                     "Guidance End: 1.0, Pixel Perfect: False, Control Mode: Balanced")
    text = build_infotext("a cat", "", {"Steps": 2, "Seed": 1, "Size": "64x64", "ControlNet 0": value})
    assert f'ControlNet 0: "{value}"' in text
    assert parse_infotext(text)["ControlNet 0"] == value
