"""The understanding job kinds through the queue (caption, ask, extract, check, chat) on the offline defaults
and on a fake OpenAI-compatible service (the remote backend), plus tag formatting and schema validation."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from modules.jobs.model import JobState
from modules.jobs.submit import submit_job
from modules.understanding.tasks.ask import AskRequest
from modules.understanding.tasks.caption import CaptionRequest
from modules.understanding.tasks.chat import ChatRequest
from modules.understanding.tasks.check import CheckRequest
from modules.understanding.tasks.common import UnderstandingRequestError
from modules.understanding.tasks.extract import ExtractRequest
from modules.understanding.tasks.schema_check import SchemaError, check_schema, parse_json_answer, validate
from modules.understanding.tasks.tags import format_tags, split_tags
from modules.world.render import render_scene
from modules.world.spec import Scene, Shape
from tests.helpers.fake_openai import FakeOpenAI

pytestmark = pytest.mark.slow


def b64(image: Image.Image, infotext: str | None = None) -> str:
    buffer = io.BytesIO()
    info = PngInfo()
    if infotext:
        info.add_text("parameters", infotext)
    image.save(buffer, format="PNG", pnginfo=info)
    return base64.b64encode(buffer.getvalue()).decode()


def scene(shape="circle", colour="red", background="blue", position="centre", size="large") -> Image.Image:
    return render_scene(Scene(background=background, shapes=(Shape(shape=shape, colour=colour, position=position,
                                                                   size=size),)), size=64)


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    from modules.app_context import create_app_context
    from modules.flags import parse_flags

    data = tmp_path_factory.mktemp("studio")
    context = create_app_context(parse_flags(["--api", "--data-dir", str(data), "--skip-load-model-at-start",
                                              "--use-cpu", "all"]))
    yield context
    context.close()


def run(ctx, request):
    job = submit_job(ctx, request, owner="test")
    ctx.queue.wait(job.id, 300)
    assert job.state is JobState.SUCCEEDED, job.error
    return job


# -- pure parts --------------------------------------------------------------------------------------------
def test_tag_formatting():
    tags = split_tags("1. red circle\n- blue_background, (smile), ^_^, Red Circle, watermark, text_logo")
    assert tags == ["red circle", "blue_background", "(smile)", "^_^", "Red Circle", "watermark", "text_logo"]
    assert format_tags(tags, underscores=True, blacklist=["watermark", "text *"]) == [
        "red_circle", "blue_background", r"\(smile\)", "^_^"]
    assert format_tags(tags, underscores=False, escape_brackets=False, max_tags=3) == [
        "red circle", "blue background", "(smile)"]


def test_schema_validation_and_json_parsing():
    schema = {"type": "object", "required": ["total"], "additionalProperties": False,
              "properties": {"total": {"type": "number", "minimum": 0}, "items": {"type": "array",
                                                                               "items": {"type": "string"}}}}
    check_schema(schema)
    assert validate({"total": 3.5, "items": ["a"]}, schema) == []
    problems = validate({"total": "3.5", "items": [1], "x": 1}, schema)
    assert len(problems) == 3, problems
    assert validate({}, schema) and validate({"total": -1}, schema)
    assert parse_json_answer('Sure:\n```json\n{"total": 2}\n```') == {"total": 2}
    assert parse_json_answer('noise {"a": {"b": 1}} tail') == {"a": {"b": 1}}
    with pytest.raises(ValueError):
        parse_json_answer("no json here")
    with pytest.raises(SchemaError):
        check_schema({"type": "frobnicate"})


# -- offline defaults through the queue --------------------------------------------------------------------
def test_caption_levels_with_the_shapes_classifier(ctx):
    image = b64(scene())
    short = run(ctx, CaptionRequest(image=image, detail="short")).result
    detailed = run(ctx, CaptionRequest(image=image, detail="detailed")).result
    tags = run(ctx, CaptionRequest(image=image, detail="tags", underscores=True, blacklist=["simple*"])).result
    assert short.caption == "a red circle"
    assert "red circle" in detailed.caption and "blue background" in detailed.caption
    assert tags.tags[0] == "red_circle" and "blue_background" in tags.tags
    assert not any(t.startswith("simple") for t in tags.tags)
    assert tags.run.backend == "default:atelier-shapes"


def test_caption_refuses_fields_that_would_be_ignored(ctx):
    with pytest.raises(UnderstandingRequestError, match="apply to detail=tags only"):
        submit_job(ctx, CaptionRequest(image=b64(scene()), detail="short", underscores=True))
    with pytest.raises(UnderstandingRequestError, match="without a prompt"):
        submit_job(ctx, CaptionRequest(image=b64(scene()), prompt="in French"))
    with pytest.raises(Exception, match="unknown backend"):
        submit_job(ctx, CaptionRequest(image=b64(scene()), backend="gpt-9"))


def test_ask_offline_default(ctx):
    image = b64(scene(shape="square", colour="yellow", background="black", position="top left", size="small"))
    answers = {q: run(ctx, AskRequest(images=[image], question=q)).result.answer
               for q in ("What shape is it?", "What colour is the shape?", "What colour is the background?",
                         "Where is the shape?", "Is the square yellow?", "Is it a red circle?", "How many shapes?")}
    assert answers == {"What shape is it?": "square", "What colour is the shape?": "yellow",
                       "What colour is the background?": "black", "Where is the shape?": "top left",
                       "Is the square yellow?": "yes", "Is it a red circle?": "no", "How many shapes?": "1"}
    job = submit_job(ctx, AskRequest(images=[image], question="Who painted this?"), owner="test")
    ctx.queue.wait(job.id, 60)
    assert job.state is JobState.FAILED and job.user_error and "only answers about" in job.error


def test_check_against_text_and_own_infotext(ctx):
    image = scene(shape="triangle", colour="green", background="white")
    good = run(ctx, CheckRequest(image=b64(image), text="a large green triangle on a white background")).result
    assert good.score == 1.0 and not good.missing
    bad = run(ctx, CheckRequest(image=b64(image), text="a red triangle on a white background")).result
    assert bad.score == pytest.approx(2 / 3, abs=1e-3) and bad.missing == ["red (colour)"]
    assert "green (colour)" in bad.extra
    infotext = "a small blue heart on a white background\nNegative prompt: ugly\nSteps: 20, Seed: 1"
    own = run(ctx, CheckRequest(image=b64(image, infotext), from_infotext=True)).result
    assert own.text == "a small blue heart on a white background" and own.score < 0.5
    with pytest.raises(UnderstandingRequestError, match="no infotext"):
        submit_job(ctx, CheckRequest(image=b64(image), from_infotext=True))


def test_extract_receipt_offline(ctx):
    from tests.helpers.synthetic_docs import receipt

    doc = receipt(3)
    result = run(ctx, ExtractRequest(image=b64(doc.image), preset="receipt")).result
    assert result.valid and result.data["total"] == doc.fields["total"]
    assert result.data["date"] == doc.fields["date"]
    assert [i["price"] for i in result.data["items"]] == [i["price"] for i in doc.fields["items"]]
    with pytest.raises(UnderstandingRequestError, match="not both"):
        submit_job(ctx, ExtractRequest(image=b64(doc.image), preset="receipt", json_schema={"type": "object"}))


def test_chat_kind_with_the_shapes_model(ctx):
    url = "data:image/png;base64," + b64(scene(colour="purple", shape="hexagon"))
    request = ChatRequest(model="atelier-shapes", messages=[
        {"role": "user", "content": [{"type": "text", "text": "What shape is this?"},
                                     {"type": "image_url", "image_url": {"url": url}}]}])
    assert run(ctx, request).result.text == "hexagon"
    with pytest.raises(UnderstandingRequestError, match="data URIs"):
        submit_job(ctx, ChatRequest(messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}]))


# -- the remote backend (a fake OpenAI-compatible service) --------------------------------------------------
@pytest.fixture()
def remote(ctx, monkeypatch):
    def use(fake: FakeOpenAI, scenario: str = "ok") -> None:
        ctx.settings.update({"vlm_api_base_url": fake.url(scenario), "vlm_api_model": "fake-vlm",
                             "vlm_api_key_env": "TEST_VLM_KEY"})
    monkeypatch.setenv("TEST_VLM_KEY", "sk-remote-secret")
    yield use
    ctx.settings.update({"vlm_api_base_url": "", "vlm_api_model": ""})


def test_remote_caption_and_extract_repair(ctx, remote):
    with FakeOpenAI(answer="red_circle, blue background, (logo), watermark") as fake:
        remote(fake)
        result = run(ctx, CaptionRequest(image=b64(scene()), detail="tags", backend="remote",
                                         blacklist=["watermark"])).result
        assert result.tags == ["red circle", "blue background", r"\(logo\)"]
        assert result.run.usage.prompt_tokens == 17
        assert fake.requests[-1]["headers"]["Authorization"] == "Bearer sk-remote-secret"
        # an invalid answer: asked again once with the errors, then reported with the raw text, never as valid
        fake.answer = '{"merchant": "Shop", "total": "lots"}'
        bad = run(ctx, ExtractRequest(image=b64(scene()), preset="receipt", backend="remote")).result
        assert not bad.valid and bad.data is None and bad.repaired and "lots" in bad.raw_text
        repair = fake.requests[-1]["body"]["messages"]
        assert repair[-1]["content"].startswith("That answer is not valid") and len(repair) == 3
        assert fake.requests[-1]["body"]["response_format"]["type"] == "json_schema"
        fake.answer = '{"merchant": "Shop", "date": "2026-01-02", "items": [], "total": 3.5}'
        good = run(ctx, ExtractRequest(image=b64(scene()), preset="receipt", backend="remote")).result
        assert good.valid and good.data["total"] == 3.5 and not good.repaired


def test_remote_unset_or_unreachable_is_a_clear_failure(ctx, remote):
    job = submit_job(ctx, AskRequest(images=[b64(scene())], question="What is it?", backend="remote"), owner="t")
    ctx.queue.wait(job.id, 60)
    assert job.state is JobState.FAILED and "no OpenAI-compatible service is set" in job.error


def test_offline_caption_and_answer_accuracy_on_world_renders(ctx, capsys):
    """Held-out renders (a seed the classifier never saw): the short caption names shape and colour, and the
    offline Ask answers shape/colour/background questions exactly (figures in docs/benchmarks.md)."""
    import random
    import time

    from modules.understanding.backends.shapes import answer_question, short_caption
    from modules.world.sampling import sample_scene, scene_labels

    rng = random.Random(2606)
    captions = answers = asked = 0
    count = 60
    started = time.perf_counter()
    for _ in range(count):
        world = sample_scene(rng, max_shapes=1)
        truth = scene_labels(world)
        labels = ctx.interrogator.predict(render_scene(world, size=64))
        captions += short_caption(labels) == short_caption(truth)
        for question in ("What shape is it?", "What colour is the shape?", "What colour is the background?"):
            asked += 1
            answers += answer_question(labels, question) == answer_question(truth, question)
    seconds = (time.perf_counter() - started) / count
    with capsys.disabled():
        print(f"\nshort caption names shape and colour: {captions / count:.3f}; offline Ask exact match "
              f"{answers / asked:.3f} ({asked} questions); {seconds * 1000:.0f} ms/image")
    assert captions / count >= 0.9 and answers / asked >= 0.9


def test_local_ernie_vlm_through_the_caption_and_ask_kinds(ctx):
    from tests.helpers.tiny_vlms import build_tiny_vlm

    build_tiny_vlm("ernie4_5_vl_moe", ctx.paths.data_dir / "models" / "VLM" / "tiny-ernie")
    assert "local:tiny-ernie" in ctx.understanding.local_models()
    caption = run(ctx, CaptionRequest(image=b64(scene()), detail="short", backend="local:tiny-ernie",
                                      max_tokens=4)).result
    assert caption.run.backend == "local:tiny-ernie" and 1 <= caption.run.usage.completion_tokens <= 4
    two = run(ctx, AskRequest(images=[b64(scene()), b64(scene(colour="green"))], question="which is red ?",
                              backend="local:tiny-ernie", max_tokens=3)).result
    assert two.run.usage.prompt_tokens > caption.run.usage.prompt_tokens  # both images in the prompt
