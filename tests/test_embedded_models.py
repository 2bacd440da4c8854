"""The shipped embedded models load through the studio's registry/loader and do what their cards say."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from modules.world import render_scene, sample_scene, scene_labels

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT = ROOT / "models" / "Stable-diffusion" / "atelier-shapes-v1.safetensors"
CARD = ROOT / "models" / "Stable-diffusion" / "atelier-shapes-v1.md"
CLASSIFIER = ROOT / "models" / "classifier" / "atelier-shapes-vit"
CONTROLNET = ROOT / "models" / "ControlNet" / "atelier-shapes-canny-v1.safetensors"


def _require(path: Path) -> None:
    if not path.exists():
        pytest.fail(f"shipped model missing: {path.relative_to(ROOT)}")


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory):
    from modules.models.loader import LoadOptions, load_model

    _require(CHECKPOINT)
    return load_model(CHECKPOINT, LoadOptions(cache_dir=tmp_path_factory.mktemp("cache")))


def test_checkpoint_is_small_sd1_with_card() -> None:
    from modules.models.detect import detect_checkpoint

    _require(CHECKPOINT)
    assert CHECKPOINT.stat().st_size <= 40 * 1024 * 1024
    assert detect_checkpoint(CHECKPOINT).family.id == "sd1"
    assert CARD.exists() and "star" in CARD.read_text()


def test_checkpoint_is_listed_by_the_catalog(tmp_path: Path) -> None:
    from modules.models.catalog import CheckpointCatalog
    from modules.models.hashing import HashCache

    _require(CHECKPOINT)
    catalog = CheckpointCatalog([CHECKPOINT.parent], HashCache(tmp_path / "hashes.json"))
    catalog.refresh()
    assert catalog.find("atelier-shapes-v1") is not None


def test_checkpoint_loads_as_sd1_64px(loaded) -> None:
    assert loaded.family.id == "sd1"
    assert loaded.native_size == (64, 64)
    assert loaded.prediction_type == "epsilon"
    pipe = loaded.pipeline
    assert pipe.text_encoder.config.vocab_size == 49408
    assert pipe.tokenizer("a photo of sks dog").input_ids == [49406, 320, 1125, 539, 48136, 1929, 49407]
    assert pipe.vae.config.scaling_factor != 0.18215
    with torch.no_grad():
        image = pipe("a red circle", num_inference_steps=2, height=64, width=64,
                     generator=torch.Generator().manual_seed(0)).images[0]
    assert image.size == (64, 64)


def test_classifier_reads_renders() -> None:
    from modules.embedded.classifier import WorldClassifier

    _require(CLASSIFIER)
    for name in ("config.json", "model.safetensors", "preprocessor_config.json"):
        assert (CLASSIFIER / name).exists()
    classifier = WorldClassifier(CLASSIFIER)
    assert "star" in classifier.groups["shape"]
    rng = random.Random(2024)
    scenes = [sample_scene(rng, max_shapes=1) for _ in range(40)]
    predictions = classifier.predict([render_scene(s) for s in scenes])
    for head in ("shape", "colour", "background", "position"):
        correct = sum(p[head] == scene_labels(s)[head] for p, s in zip(predictions, scenes))
        assert correct >= 36, f"{head}: {correct}/40"


def test_shipped_classifier_has_the_recipe_dimensions() -> None:
    """`train_all` re-trains what is shipped: the classifier's saved config must be the recipe's."""
    from modules.embedded.classifier import CLASSIFIER_CONFIG

    _require(CLASSIFIER)
    saved = json.loads((CLASSIFIER / "config.json").read_text())
    assert {key: saved[key] for key in CLASSIFIER_CONFIG} == CLASSIFIER_CONFIG


def test_shipped_checkpoint_has_the_recipe_dimensions(loaded) -> None:
    from modules.embedded.config import TEXT_ENCODER_CONFIG, UNET_CONFIG, VAE_CONFIG

    pipe = loaded.pipeline
    for model, recipe in ((pipe.unet, UNET_CONFIG), (pipe.vae, VAE_CONFIG), (pipe.text_encoder, TEXT_ENCODER_CONFIG)):
        config = model.config if isinstance(model.config, dict) else model.config.to_dict()
        # projection_dim belongs to CLIPTextModelWithProjection; CLIPTextModel has no such layer or weights
        keys = [key for key in recipe if key != "projection_dim"]
        got = {key: list(config[key]) if isinstance(config[key], tuple) else config[key] for key in keys}
        assert got == {key: recipe[key] for key in keys}, type(model).__name__


def test_controlnet_loads_from_unet_config() -> None:
    from modules.embedded.export import load_controlnet

    _require(CONTROLNET)
    controlnet = load_controlnet(CONTROLNET)
    config = json.loads(CONTROLNET.with_suffix(".json").read_text())
    assert controlnet.config.cross_attention_dim == config["cross_attention_dim"]
    assert controlnet.config.block_out_channels == tuple(config["block_out_channels"]) or \
        list(controlnet.config.block_out_channels) == config["block_out_channels"]


def _judged(loaded, prompt: str) -> list[dict[str, str]]:
    """The shipped classifier's reading of `prompt` drawn with DPM++ 2M, 20 steps, CFG 7, seeds 0-3."""
    from modules.embedded.classifier import WorldClassifier
    from modules.embedded.pipeline import generate
    from modules.generation.sampling.samplers import resolve_sampler

    pipe = loaded.pipeline
    pipe.scheduler = resolve_sampler("DPM++ 2M").build(loaded.scheduler_config, loaded.prediction_type)
    images = generate(pipe, [prompt] * 4, [0, 1, 2, 3], steps=20, guidance=7.0)
    return WorldClassifier(CLASSIFIER).predict(images)


@pytest.mark.slow
def test_red_circle_is_drawn_as_a_red_circle(loaded) -> None:
    predictions = _judged(loaded, "a red circle")
    assert sum(p["shape"] == "circle" and p["colour"] == "red" for p in predictions) >= 3, predictions


@pytest.mark.slow
def test_red_circle_on_blue_is_drawn_on_blue(loaded) -> None:
    predictions = _judged(loaded, "a red circle on a blue background")
    hits = sum(p["shape"] == "circle" and p["colour"] == "red" and p["background"] == "blue" for p in predictions)
    assert hits >= 3, predictions


@pytest.mark.slow
@pytest.mark.parametrize("position", ["top left", "bottom right"])
def test_position_words_place_the_shape(loaded, position: str) -> None:
    predictions = _judged(loaded, f"a large red square at the {position}")
    assert sum(p["position"] == position for p in predictions) >= 3, predictions


@pytest.mark.slow
def test_canny_map_at_the_top_left_moves_the_shape_there(loaded) -> None:
    from modules.embedded.canny import canny_map
    from modules.embedded.classifier import WorldClassifier
    from modules.embedded.export import load_controlnet
    from modules.embedded.pipeline import generate, with_controlnet
    from modules.generation.sampling.samplers import resolve_sampler
    from modules.world.spec import Scene, Shape

    _require(CONTROLNET)
    edges = canny_map(render_scene(Scene("white", (Shape("circle", "red", "top left", "large"),))))
    pipe = with_controlnet(loaded.pipeline, load_controlnet(CONTROLNET))
    pipe.scheduler = resolve_sampler("DPM++ 2M").build(loaded.scheduler_config, loaded.prediction_type)
    images = generate(pipe, ["a red circle"] * 4, [0, 1, 2, 3], steps=20, guidance=7.0, image=edges)
    predictions = WorldClassifier(CLASSIFIER).predict(images)
    assert sum(p["position"] == "top left" for p in predictions) >= 3, predictions


@pytest.mark.slow
def test_studio_controlnet_unit_with_the_shipped_canny_model_moves_the_shape(tmp_path: Path) -> None:
    """The same check through the studio's own path: a txt2img request with an sd-webui-controlnet unit
    (module "canny" run by the studio's preprocessor on a plain render, model found by name)."""
    from modules.embedded.classifier import WorldClassifier
    from modules.generation.controlnet.hook import controlnet_hook
    from modules.generation.controlnet.units import parse_unit
    from modules.generation.runners.img2img import encode_request_image
    from modules.generation.requests import Txt2ImgRequest
    from modules.generation.results import OutputOptions
    from modules.generation.runners.txt2img import run_txt2img
    from modules.jobs.progress import JobControl
    from modules.world.spec import Scene, Shape
    from tests.test_img2img import load_active

    _require(CONTROLNET)
    active = load_active(CHECKPOINT, tmp_path / "cache")
    picture = render_scene(Scene("white", (Shape("circle", "red", "top left", "large"),)))
    unit = parse_unit({"module": "canny", "model": "atelier-shapes-canny-v1", "pixel_perfect": True,
                       "image": encode_request_image(picture)})
    req = Txt2ImgRequest(prompt="a red circle", steps=20, cfg_scale=7, width=64, height=64, seed=0, batch_size=4,
                         sampler_name="DPM++ 2M")
    result = run_txt2img(req, active, JobControl(), OutputOptions(save=False, outdir=tmp_path),
                         hooks=[controlnet_hook([unit], CONTROLNET.parent)])
    assert 'Model: atelier-shapes-canny-v1 [' in result.infotexts[0]
    predictions = WorldClassifier(CLASSIFIER).predict(result.images)
    assert sum(p["position"] == "top left" for p in predictions) >= 3, predictions


def test_interrogate_describes_a_render_with_the_shipped_classifier(tmp_path: Path) -> None:
    from modules.understanding.interrogate import Interrogator, InterrogatorMissing
    from modules.world.spec import Scene, Shape

    _require(CLASSIFIER)
    picture = render_scene(Scene("blue", (Shape("heart", "yellow", "right", "large"),)))
    interrogator = Interrogator([tmp_path / "nowhere", CLASSIFIER])
    assert interrogator.interrogate(picture) == "a large yellow heart on the right on a blue background"
    assert interrogator.interrogate(picture, "deepdanbooru").split(", ")[:2] == ["yellow", "heart"]
    with pytest.raises(InterrogatorMissing, match="not"):
        Interrogator([tmp_path / "nowhere"]).interrogate(picture)
