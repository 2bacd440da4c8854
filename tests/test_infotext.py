"""Tests for A1111 infotext building and parsing."""

from __future__ import annotations

import pytest

from modules.images.infotext import (
    InfotextError,
    build_infotext,
    infotext_to_request_fields,
    parse_infotext,
    quote,
    uses_emphasis,
)

A1111_SAMPLE = (
    "masterpiece, a cat in a hat\n"
    "sitting on a chair, (detailed:1.2)\n"
    "Negative prompt: blurry, lowres\n"
    "bad hands\n"
    "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 3405691582, "
    "Size: 512x768, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, VAE hash: 735e4c3a44, "
    "VAE: vae-ft-mse-840000-ema-pruned.safetensors, Denoising strength: 0.5, Clip skip: 2, "
    'Hires upscale: 2, Hires upscaler: Latent, Lora hashes: "add_detail: 7c6bad76eb54", Version: v1.10.1'
)


def test_parse_a1111_sample() -> None:
    res = parse_infotext(A1111_SAMPLE)
    assert res["Prompt"] == "masterpiece, a cat in a hat\nsitting on a chair, (detailed:1.2)"
    assert res["Negative prompt"] == "blurry, lowres\nbad hands"
    assert res["Steps"] == "20"
    assert res["Sampler"] == "DPM++ 2M"
    assert res["Schedule type"] == "Karras"
    assert res["CFG scale"] == "7"
    assert res["Seed"] == "3405691582"
    assert (res["Size-1"], res["Size-2"]) == ("512", "768")
    assert "Size" not in res
    assert res["Model hash"] == "6ce0161689"
    assert res["Lora hashes"] == "add_detail: 7c6bad76eb54"
    assert res["Clip skip"] == "2"
    assert res["Version"] == "v1.10.1"
    assert res["Emphasis"] == "Original"  # the prompt uses a weight
    # A1111 defaults filled in
    assert res["RNG"] == "GPU"
    assert res["Hires sampler"] == "Use same sampler"
    assert res["Hires resize-1"] == 0 and res["Hires resize-2"] == 0
    assert res["Masked area padding"] == 32
    assert res["FP8 weight"] == "Disable"
    assert "Cache FP16 weight for LoRA" not in res
    assert res["Refiner switch by sampling steps"] is False
    assert "Downcast alphas_cumprod" not in res


def test_parse_defaults_for_minimal_infotext() -> None:
    res = parse_infotext("a dog\nSteps: 10, Sampler: Euler a, CFG scale: 5, Seed: 1, Size: 64x64")
    assert res["Prompt"] == "a dog"
    assert res["Negative prompt"] == ""
    assert res["Clip skip"] == "1"
    assert res["Schedule type"] == "Automatic"
    assert res["Hires schedule type"] == "Use same scheduler"
    assert res["Hires checkpoint"] == "Use same checkpoint"
    assert res["VAE Encoder"] == "Full" and res["VAE Decoder"] == "Full"
    assert res["Mask mode"] == "Inpaint masked"
    assert res["Masked content"] == "original"
    assert res["Inpaint area"] == "Whole picture"
    assert "Emphasis" not in res


def test_last_line_with_fewer_than_three_params_is_prompt() -> None:
    text = "first line\nStyle: noir, Mood: dark"
    res = parse_infotext(text)
    assert res["Prompt"] == "first line\nStyle: noir, Mood: dark"
    assert "Style" not in res and "Mood" not in res


def test_negative_prompt_only_and_whitespace_stripping() -> None:
    res = parse_infotext("  a cat  \nNegative prompt:   ugly  \nSteps: 5, Seed: 2, CFG scale: 3")
    assert res["Prompt"] == "a cat"
    assert res["Negative prompt"] == "ugly"


def test_quoted_values_are_json_unquoted() -> None:
    text = 'p\nSteps: 1, Seed: 2, CFG scale: 3, Hires prompt: "line one\\nline two, with comma", TI hashes: "emb: abc"'
    res = parse_infotext(text)
    assert res["Hires prompt"] == "line one\nline two, with comma"
    assert res["TI hashes"] == "emb: abc"


def test_empty_value_is_skipped_like_a1111() -> None:
    res = parse_infotext("p\nSteps: 1, Seed: 2, Foo: , CFG scale: 3")
    assert "Foo" not in res and res["CFG scale"] == "3"


def test_old_first_pass_size_is_restored() -> None:
    res = parse_infotext("p\nSteps: 1, Seed: 2, Size: 1024x1024, First pass size: 0x0")
    assert (res["Size-1"], res["Size-2"]) == (512, 512)
    assert (res["Hires resize-1"], res["Hires resize-2"]) == (1024, 1024)


def test_backcompat_flags_for_old_versions() -> None:
    res = parse_infotext("a [b:c:5]\nSteps: 1, Sampler: DDIM, Seed: 2, Version: v1.5.1")
    assert res["Old prompt editing timelines"] is True
    assert res["Pad conds v0"] is True
    assert res["Downcast alphas_cumprod"] is True


def test_non_string_rejected() -> None:
    with pytest.raises(InfotextError):
        parse_infotext(None)  # type: ignore[arg-type]


def test_build_exact_a1111_format_and_order() -> None:
    params = {
        "Version": "v1.10.1",
        "Lora hashes": "add_detail: 7c6bad76eb54",
        "Size": "512x768",
        "Seed": 3405691582,
        "Steps": 20,
        "Sampler": "DPM++ 2M",
        "Hires upscale": 2,
        "CFG scale": 7,
        "Schedule type": "Karras",
        "Model hash": "6ce0161689",
        "Face restoration": None,
        "Model": "v1-5-pruned-emaonly",
        "Clip skip": 2,
        "Hires upscaler": "Latent",
        "VAE hash": "735e4c3a44",
        "VAE": "vae-ft-mse-840000-ema-pruned.safetensors",
        "Denoising strength": 0.5,
    }
    text = build_infotext(
        "masterpiece, a cat in a hat\nsitting on a chair, (detailed:1.2)", "blurry, lowres\nbad hands", params
    )
    assert text == A1111_SAMPLE.replace(
        "Hires upscale: 2, Hires upscaler: Latent, Lora hashes: \"add_detail: 7c6bad76eb54\"",
        "Lora hashes: \"add_detail: 7c6bad76eb54\", Hires upscale: 2, Hires upscaler: Latent",
    )


def test_build_omits_empty_negative_and_none_values_and_writes_bare_keys() -> None:
    text = build_infotext("a cat", "", {"Steps": 20, "Seed": None, "CFG scale": 7.0, "Flag": "Flag"})
    assert text == "a cat\nSteps: 20, CFG scale: 7.0, Flag"


def test_build_with_empty_prompt_is_stripped() -> None:
    assert build_infotext("", "", {"Steps": 1, "Seed": 2}) == "Steps: 1, Seed: 2"


def test_user_comes_after_version() -> None:
    text = build_infotext("p", "", {"User": "ann", "Version": "v1", "Steps": 3, "Zeta": "z"})
    assert text.splitlines()[-1] == "Steps: 3, Zeta: z, Version: v1, User: ann"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain", "plain"),
        ("a, b", '"a, b"'),
        ("k: v", '"k: v"'),
        ("line\nbreak", '"line\\nbreak"'),
        ("ünïcode, ok", '"ünïcode, ok"'),
        (7, 7),
    ],
)
def test_quote_rule(value: object, expected: object) -> None:
    assert quote(value) == expected


def test_round_trip_build_parse() -> None:
    prompt = "a photo of a cat, (fluffy:1.3)\nsecond line"
    negative = "ugly, blurry"
    params = {
        "Steps": 30,
        "Sampler": "Euler a",
        "Schedule type": "Automatic",
        "CFG scale": 6.5,
        "Seed": 42,
        "Size": "640x448",
        "Model hash": "abcdef1234",
        "Model": "my model",
        "Variation seed": 43,
        "Variation seed strength": 0.25,
        "Seed resize from": "512x512",
        "Denoising strength": 0.4,
        "Clip skip": 2,
        "RNG": "CPU",
        "Hires prompt": "detailed, sharp: yes\nmore",
        "Version": "atelier-0.1",
    }
    res = parse_infotext(build_infotext(prompt, negative, params))
    assert res["Prompt"] == prompt
    assert res["Negative prompt"] == negative
    assert res["Hires prompt"] == "detailed, sharp: yes\nmore"
    assert res["Seed resize from-1"] == "512" and res["Seed resize from-2"] == "512"
    fields = infotext_to_request_fields(res)
    assert fields["prompt"] == prompt
    assert fields["negative_prompt"] == negative
    assert fields["steps"] == 30
    assert fields["sampler_name"] == "Euler a"
    assert fields["scheduler"] == "Automatic"
    assert fields["cfg_scale"] == 6.5
    assert fields["seed"] == 42
    assert (fields["width"], fields["height"]) == (640, 448)
    assert (fields["subseed"], fields["subseed_strength"]) == (43, 0.25)
    assert (fields["seed_resize_from_w"], fields["seed_resize_from_h"]) == (512, 512)
    assert fields["denoising_strength"] == 0.4
    assert fields["clip_skip"] == 2
    assert fields["checkpoint"] == "my model"
    assert fields["model_hash"] == "abcdef1234"
    assert fields["randn_source"] == "CPU" and "RNG" not in fields["extra"]  # RNG is a request field now
    assert fields["extra"]["Version"] == "atelier-0.1"
    assert "Mask mode" not in fields["extra"]


def test_request_fields_split_legacy_sampler_and_convert_default_to_automatic() -> None:
    legacy = infotext_to_request_fields(parse_infotext("p\nSteps: 20, Sampler: DPM++ 2M Karras, Seed: 1"))
    assert (legacy["sampler_name"], legacy["scheduler"]) == ("DPM++ 2M", "Automatic")
    explicit = infotext_to_request_fields(
        parse_infotext("p\nSteps: 20, Sampler: DPM++ 2M, Schedule type: Exponential, Seed: 1")
    )
    assert (explicit["sampler_name"], explicit["scheduler"]) == ("DPM++ 2M", "Exponential")
    unknown = infotext_to_request_fields(parse_infotext("p\nSteps: 20, Sampler: DPM adaptive, Seed: 1"))
    assert (unknown["sampler_name"], unknown["scheduler"]) == ("DPM adaptive", "Automatic")


def test_request_fields_types_extra_and_bad_values() -> None:
    fields = infotext_to_request_fields(parse_infotext(A1111_SAMPLE))
    assert fields["steps"] == 20 and isinstance(fields["steps"], int)
    assert fields["cfg_scale"] == 7.0 and isinstance(fields["cfg_scale"], float)
    assert fields["seed"] == 3405691582
    assert (fields["width"], fields["height"]) == (512, 768)
    assert fields["clip_skip"] == 2
    assert fields["hr_scale"] == 2.0
    assert fields["hr_upscaler"] == "Latent"
    assert fields["enable_hr"] is True
    assert "hr_sampler_name" not in fields  # "Use same sampler" placeholder
    assert fields["extra"]["Lora hashes"] == "add_detail: 7c6bad76eb54"
    assert fields["extra"]["VAE"] == "vae-ft-mse-840000-ema-pruned.safetensors"
    bad = infotext_to_request_fields(parse_infotext("p\nSteps: many, Seed: 1, CFG scale: 7"))
    assert "steps" not in bad and bad["extra"]["Steps"] == "many"
    assert bad["enable_hr"] is False


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("plain words", False),
        ("(word:1.0)", False),
        ("(word)", True),
        ("[word]", True),
        ("(word:0.8)", True),
        (r"\(literal\)", False),
        ("a BREAK b", False),
    ],
)
def test_uses_emphasis(prompt: str, expected: bool) -> None:
    assert uses_emphasis(prompt) is expected
