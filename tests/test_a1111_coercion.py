"""The A1111 API takes what AUTOMATIC1111 v1.10 takes: pydantic-1 coercions of the request fields, sizes and
clip skip fitted to the model (not refused), features the studio lacks reported in ``info``, and a
``POST /options`` body validated whole before anything is applied. Unit level; the replays of real clients
against a running studio are in test_a1111_clients.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modules.api.pydantic1 import coerce_v1
from modules.api.sdapi_models import SdImg2ImgPayload, SdTxt2ImgPayload
from modules.api.sdapi_notes import request_warnings
from modules.api.sdapi_options import IGNORED_HEADER, ignored_header, plan_options_change
from modules.generation.fitting import fit_dimension, fit_to_model, nearest_multiple
from modules.generation.requests import Txt2ImgRequest
from modules.generation.validation import InvalidRequestError
from modules.models.families import get_family
from modules.settings import Settings, SettingsError


# --------------------------------------------------------------------------- pydantic 1 coercions

@pytest.mark.parametrize("value, annotation, expected", [
    (2.5, int, 2),                 # pydantic 1: int(2.5), truncation
    (-2.7, int, -2),
    (7.0, int | None, 7),
    (5, str, "5"),                 # pydantic 1 writes numbers out into str fields
    (7.5, str | None, "7.5"),
    ([1, "a"], list[str], ["1", "a"]),
    ([1.9], list[str] | None, ["1.9"]),
    (True, str, True),             # a bool is left to pydantic 2 (which refuses it into str)
    ("7.0", float, "7.0"),         # pydantic 2 takes these itself
    (None, int | None, None),
])
def test_coerce_v1(value: Any, annotation: Any, expected: Any) -> None:
    assert coerce_v1(value, annotation) == expected


def test_txt2img_payload_coerces_like_pydantic_1() -> None:
    payload = SdTxt2ImgPayload(prompt=5, steps=2.9, cfg_scale="7.0", seed=None, n_iter=None, styles=[1, "b"],
                               enable_hr="yes", hr_scale="1.5", restore_faces=1, width=100.0, height="60")
    assert payload.prompt == "5" and payload.steps == 2 and payload.cfg_scale == 7.0
    assert payload.seed == -1 and payload.n_iter == 1  # null: A1111's "not set", the default here
    assert payload.styles == ["1", "b"] and payload.enable_hr is True and payload.hr_scale == 1.5
    assert payload.restore_faces is True and (payload.width, payload.height) == (100, 60)
    req = payload.to_request()
    assert req.fit_to_model and (req.width, req.height) == (100, 60)  # fitted by the job, not refused here


def test_extras_payload_coerces_like_pydantic_1() -> None:
    from modules.api.sdapi_listing_models import ExtrasSingleImagePayload

    extras = ExtrasSingleImagePayload(image="x", upscaling_resize="2", upscaling_resize_w=100.7, resize_mode=None,
                                      upscaling_resize_crop=True)  # stable-diffusion-api's spelling: ignored
    assert (extras.upscaling_resize, extras.upscaling_resize_w, extras.resize_mode) == (2.0, 100, 0)


def test_a_value_neither_pydantic_takes_is_still_a_validation_error() -> None:
    with pytest.raises(ValueError, match="steps"):
        SdTxt2ImgPayload(steps="twenty")


@pytest.mark.parametrize("sent, used", [(0, 1), (1, 1), (2, 2), ("2", 2), (2.0, 2), (12, 12)])
def test_clip_skip_as_a1111_reads_it(sent: Any, used: int) -> None:
    assert SdTxt2ImgPayload(override_settings={"CLIP_stop_at_last_layers": sent}).to_request().clip_skip == used
    assert SdTxt2ImgPayload(clip_skip=sent).to_request().clip_skip == used  # SD.Next's field, sent by SillyTavern


def test_unknown_body_keys_and_secrets_are_not_echoed() -> None:
    body = {"prompt": "cat", "url": "http://127.0.0.1:7860", "auth": "user:hunter2", "hr_additional_modules": [],
            "restore_faces": True, "s_churn": 0.0, "use_deprecated_controlnet": False}
    echo = SdTxt2ImgPayload(**body).echo((64, 64))
    assert "auth" not in echo and "url" not in echo and "hunter2" not in repr(echo)
    assert "hr_additional_modules" not in echo and "use_deprecated_controlnet" not in echo
    assert echo["restore_faces"] is True and echo["s_churn"] == 0.0  # A1111 fields are echoed, as A1111 does
    img = SdImg2ImgPayload(init_images=["x"], auth="user:hunter2", latent_mask=None).echo((64, 64))
    assert "auth" not in img and img["init_images"] is None


# --------------------------------------------------------------------------- what is not applied

def test_request_warnings_name_what_was_not_applied() -> None:
    settings = Settings().model_dump()
    payload = SdTxt2ImgPayload(restore_faces=True, tiling=False, alwayson_scripts={
        "ADetailer": {"args": [True, True, {"ad_model": "face_yolov8n.pt"}]}, "ControlNet": {"args": []}},
        override_settings={"CLIP_stop_at_last_layers": 2, "sd_vae": "Automatic", "samples_format": "png",
                           "forge_additional_modules": ["vae.safetensors"], "eta_noise_seed_delta": None})
    notes = request_warnings(payload, settings)
    assert len(notes) == 3, notes
    assert "restore_faces" in notes[0] and "not face-restored" in notes[0]
    assert "'ADetailer'" in notes[1] and "ControlNet" not in notes[1]
    # samples_format equals the setting in force and a null changes nothing: only the Forge key is named
    assert "forge_additional_modules" in notes[2] and "samples_format" not in notes[2]
    assert request_warnings(SdTxt2ImgPayload(restore_faces=False), settings) == []


def test_sampler_parameters_away_from_a1111_defaults_are_named() -> None:
    settings = Settings().model_dump()
    defaults = SdTxt2ImgPayload(eta=1.0, s_churn=0, s_tmin=0, s_tmax=0, s_noise=1, s_min_uncond=0)
    assert request_warnings(defaults, settings) == []  # stable-diffusion-api's defaults change nothing
    (note,) = request_warnings(SdTxt2ImgPayload(eta=0.5, s_churn=2, s_noise=1), settings)
    assert note.startswith("eta=0.5, s_churn=2: not applied")


def test_unknown_style_names_are_passed_over_and_named(tmp_path: Path) -> None:
    from modules.api.sdapi_notes import known_styles
    from modules.generation.prompts.styles import StyleStore

    (tmp_path / "styles.csv").write_text("name,prompt,negative_prompt\nflat,{prompt} flat,\n", encoding="utf-8")
    store = StyleStore([tmp_path / "styles.csv"])
    assert known_styles(["flat"], store) == (["flat"], [])
    kept, notes = known_styles(["cinematic", "flat"], store)
    assert kept == ["flat"] and "'cinematic'" in notes[0]
    assert known_styles(["flat"], None)[0] == []


def test_extra_networks_that_are_not_here_are_passed_over_and_named() -> None:
    from modules.api.sdapi_notes import _pass_over_networks

    missing: list[str] = []
    text = _pass_over_networks("a <lora:here:0.5> cat <lora:gone:1> <hypernet:x:1> <lora:gone:0.2>",
                               frozenset({"lora", "lyco"}), lambda name: name == "here", missing)
    assert text == "a <lora:here:0.5> cat   " and missing == ["<lora:gone>", "<hypernet:x>"]


# --------------------------------------------------------------------------- POST /options

def _current() -> dict[str, Any]:
    return {**Settings().model_dump(), "sd_model_checkpoint": "a.safetensors [0123456789]",
            "sd_checkpoint_hash": "0123456789abcdef"}


def test_open_webui_post_back_switches_only_the_model() -> None:
    body = {**_current(), "sd_model_checkpoint": "b.safetensors [fedcba9876]"}
    change = plan_options_change(body, _current())
    assert change.checkpoint == "b.safetensors [fedcba9876]" and change.settings == {} and change.ignored == {}
    assert ignored_header(change) == {}


def test_read_only_and_unknown_keys_are_ignored_and_reported() -> None:
    body = {"sd_checkpoint_hash": "ffff", "show_progress_every_n_steps": 3, "img2img_fix_steps": True,
            "not_there": None}
    change = plan_options_change(body, _current())
    assert change.checkpoint is None and change.settings == {"show_progress_every_n_steps": 3}
    assert set(change.ignored) == {"sd_checkpoint_hash", "img2img_fix_steps"}
    assert ignored_header(change) == {IGNORED_HEADER: "sd_checkpoint_hash, img2img_fix_steps"}


def test_the_ignored_header_is_always_valid_header_text() -> None:
    change = plan_options_change({"caf\u00e9\n": 1, "x" * 3000: 2}, _current())
    header = ignored_header(change)[IGNORED_HEADER]
    assert header.startswith("caf??, xxx") and header.endswith("...") and len(header) == 2000
    assert all(" " <= c <= "~" for c in header)


def test_an_invalid_value_refuses_the_whole_body_before_anything_is_applied() -> None:
    body = {"sd_model_checkpoint": "b.safetensors", "show_progress_every_n_steps": "often"}
    with pytest.raises(SettingsError, match="show_progress_every_n_steps"):
        plan_options_change(body, _current())


def test_the_loaded_checkpoint_posted_again_switches_nothing() -> None:
    loaded = {"sd_model_checkpoint": _current()["sd_model_checkpoint"]}
    assert plan_options_change(loaded, _current()).checkpoint is None


# --------------------------------------------------------------------------- fitting to the model

@pytest.mark.parametrize("value, multiple, expected", [
    (60, 8, 56), (100, 8, 96), (540, 8, 536), (541, 8, 544), (63, 8, 64), (3, 8, 8), (540, 16, 544), (536, 16, 528)])
def test_nearest_multiple(value: int, multiple: int, expected: int) -> None:
    assert nearest_multiple(value, multiple) == expected


def test_fit_dimension_stays_in_the_family_range() -> None:
    sd1, flux = get_family("sd1"), get_family("flux-dev")
    assert fit_dimension(540, sd1) == 536 and fit_dimension(540, flux) == 544
    assert fit_dimension(36, sd1) == sd1.min_size and fit_dimension(4000, sd1) == sd1.max_size


class _Tokenizer:
    pad_token_id = None
    eos_token_id = 2


class _Config:
    num_hidden_layers = 3


class _Encoder:
    config = _Config()


class _Pipe:
    text_encoder = _Encoder()
    tokenizer = _Tokenizer()


class _Model:
    family = get_family("sd1")
    pipeline = _Pipe()


def test_fit_to_model_rounds_the_size_and_clamps_clip_skip() -> None:
    req = Txt2ImgRequest(width=100, height=60, clip_skip=12, fit_to_model=True)
    fitted, notes = fit_to_model(req, _Model())  # type: ignore[arg-type]
    assert (fitted.width, fitted.height, fitted.clip_skip) == (96, 64, 3)
    assert "generated at 96x64" in notes[0] and "3 layers" in notes[1] and "used 3" in notes[1]
    fine = Txt2ImgRequest(width=64, height=64, clip_skip=2, fit_to_model=True)
    same, none = fit_to_model(fine, _Model())  # type: ignore[arg-type]
    assert none == [] and (same.width, same.clip_skip) == (64, 2)


def test_a_strict_request_is_refused_naming_the_limit() -> None:
    fitted, notes = fit_to_model(Txt2ImgRequest(width=100, height=60), _Model())  # type: ignore[arg-type]
    assert (fitted.width, notes) == (100, [])  # sizes stay for resolve_size to refuse, naming the multiple
    with pytest.raises(InvalidRequestError, match=r"clip skip 12 .*3 layers.*1\.\.3"):
        fit_to_model(Txt2ImgRequest(clip_skip=12), _Model())  # type: ignore[arg-type]


def test_clip_skip_depth_of_a_real_sd1_encoder_config() -> None:
    import json

    from modules.generation.prompts.conditioning import clip_skip_depth

    config = json.loads((Path(__file__).resolve().parents[1] / "configs" / "families" / "sdxl" / "text_encoder" /
                         "config.json").read_text())

    class Sd15Pipe(_Pipe):
        text_encoder = type("TE", (), {"config": type("C", (), {"num_hidden_layers": config["num_hidden_layers"]})()})()

    assert clip_skip_depth(Sd15Pipe(), "sd1") == 12  # CLIP ViT-L/14, as SD 1.5's
    assert clip_skip_depth(Sd15Pipe(), "flux-dev") is None
