"""Classification (issue 26 point 5): the image-model loader on a tiny random-weight ViTForImageClassification saved
as a real models/classifier folder and on the embedded shapes classifier; the classify job kind through the queue;
the INT8 agreement check (ONNX export + dynamic quantization) and its gate; fine-tuning on a labelled folder; the
Classify sub-tab's handlers."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from modules.jobs.model import JobState
from modules.jobs.submit import submit_job
from modules.world.render import render_scene
from modules.world.spec import Scene, Shape

pytestmark = pytest.mark.slow   # trains a (tiny) classifier


def scene(shape: str = "circle", colour: str = "red", background: str = "blue", position: str = "centre",
          size: str = "large") -> Image.Image:
    return render_scene(Scene(background=background, shapes=(Shape(shape=shape, colour=colour, position=position,
                                                                   size=size),)), size=64)


def b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def save_tiny_vit(folder: Path, labels: list[str], seed: int = 0) -> Path:
    """A tiny random-weight ViTForImageClassification in the on-disk format of a downloaded classifier."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(seed)
    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=64, num_labels=len(labels), id2label=dict(enumerate(labels)),
                       label2id={v: k for k, v in enumerate(labels)})
    ViTForImageClassification(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    from modules.app_context import create_app_context
    from modules.flags import parse_flags

    data = tmp_path_factory.mktemp("studio")
    save_tiny_vit(data / "models" / "classifier" / "tiny-vit", ["cat", "dog", "fish"])
    context = create_app_context(parse_flags(["--api", "--data-dir", str(data), "--skip-load-model-at-start",
                                              "--use-cpu", "all"]))
    yield context
    context.close()


def run(ctx, request):
    job = submit_job(ctx, request, owner="test")
    ctx.queue.wait(job.id, 300)
    assert job.state is JobState.SUCCEEDED, job.error
    return job


def own_images(ctx) -> Path:
    """``<data dir>/mine``: eight of "the user's own" images."""
    folder = ctx.paths.data_dir / "mine"
    if not folder.is_dir():
        folder.mkdir()
        shapes = ("circle", "square", "triangle", "star", "heart", "diamond", "hexagon", "cross")
        for index, shape in enumerate(shapes):
            scene(shape, ("red", "blue", "yellow", "green")[index % 4], "white").save(folder / f"{index}.png")
    return folder


def test_loader_lists_loads_classifies_and_embeds(ctx):
    from modules.understanding.image_models import IMAGE_MODEL_SLOT, list_image_models, load_image_model

    assert list_image_models(ctx)[:2] == ["atelier-shapes-vit", "tiny-vit"]
    model = load_image_model(ctx, "tiny-vit")
    weights = ctx.paths.data_dir / "models" / "classifier" / "tiny-vit" / "model.safetensors"
    assert model.model_id == f"tiny-vit@{ctx.hashes.sha256(weights)[:10]}"
    assert model.labels == ["cat", "dog", "fish"] and model.groups is None
    images = [scene(colour=c) for c in ("red", "green", "blue")]
    top = model.classify(images, top_k=2, batch=2)
    assert [len(row) for row in top] == [2, 2, 2]
    for row in top:
        assert row[0].score >= row[1].score and row[0].label in model.labels
    full = model.classify(images[:1], top_k=3)[0]
    assert sum(p.score for p in full) == pytest.approx(1.0, abs=1e-5)
    vectors = model.embed(images, batch=2)
    assert vectors.shape == (3, 32) and vectors.dtype == np.float32
    assert np.linalg.norm(vectors, axis=1) == pytest.approx(np.ones(3), abs=1e-5)
    assert np.allclose(model.embed(images[1:2]), vectors[1:2], atol=1e-5)   # batching does not change a vector
    assert load_image_model(ctx, "tiny-vit") is model and ctx.models.slots.slot(IMAGE_MODEL_SLOT) is model

    shapes = load_image_model(ctx, None)   # the embedded default: grouped labels, scores within each group
    assert shapes.model_id.startswith("atelier-shapes-vit@") and set(shapes.groups) == {
        "shape", "colour", "background", "position", "size"}
    preds = shapes.classify([scene("square", "yellow")], top_k=1)[0]
    assert {p.label for p in preds} >= {"shape=square", "colour=yellow", "background=blue"}
    embedded = shapes.embed([scene("square", "yellow")])   # in its label space: per group, sqrt of the scores
    assert embedded.shape == (1, len(shapes.labels)) and shapes.embed_dim == len(shapes.labels)
    square = shapes.labels.index("shape=square")
    assert embedded[0, square] ** 2 * len(shapes.groups) == pytest.approx(
        shapes.classify([scene("square", "yellow")], top_k=1)[0][0].score, abs=1e-4)


def test_missing_incomplete_and_corrupt_folders_are_explained(ctx):
    from modules.understanding.image_models import ImageModelError, ImageModelMissing, load_image_model

    root = ctx.paths.data_dir / "models" / "classifier"
    with pytest.raises(ImageModelMissing, match=r"no image classifier 'nope'.*installed: atelier-shapes-vit, tiny-vit"):
        load_image_model(ctx, "nope")
    with pytest.raises(ImageModelMissing):
        load_image_model(ctx, "../classifier")
    broken = save_tiny_vit(root / "broken", ["a", "b"])
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ImageModelError, match="weights could not be read"):
        load_image_model(ctx, "broken")
    (broken / "model.safetensors").unlink()
    with pytest.raises(ImageModelError, match="incomplete: model.safetensors missing"):
        load_image_model(ctx, "broken")
    assert "broken" not in __import__("modules.understanding.image_models", fromlist=["x"]).list_image_models(ctx)


def test_classify_job_top_k_batched_and_int8_refused_before_a_check(ctx):
    from modules.understanding.classify.job import ClassifyRequest

    images = [b64(scene("star", "green", "white")), b64(scene("heart", "purple", "black"))]
    job = run(ctx, ClassifyRequest(images=images, top_k=1, batch=1))
    firsts = [{p["label"] for p in row} for row in job.result.predictions]
    assert {"shape=star", "colour=green"} <= firsts[0] and {"shape=heart", "colour=purple"} <= firsts[1]
    described = ctx.kinds.describe("classify", job.result)
    assert described["model_id"].startswith("atelier-shapes-vit@") and described["precision"] == "float"

    job = run(ctx, ClassifyRequest(images=images * 3, model="tiny-vit", top_k=2, batch=4))
    assert len(job.result.predictions) == 6 and all(len(row) == 2 for row in job.result.predictions)

    with pytest.raises(Exception, match="no INT8 model yet"):
        submit_job(ctx, ClassifyRequest(images=images, model="tiny-vit", precision="int8"), owner="test")
    with pytest.raises(Exception, match="no image classifier 'nope'"):
        submit_job(ctx, ClassifyRequest(images=images, model="nope"), owner="test")
    with pytest.raises(Exception):
        ClassifyRequest(images=images, topk=3)   # no field accepted and ignored
    from pydantic import TypeAdapter

    body = TypeAdapter(ctx.kinds.submission_model()).validate_python(   # the native job API's body
        {"kind": "classify", "request": {"images": images, "model": "tiny-vit", "top_k": 2}})
    assert isinstance(body.request, ClassifyRequest) and body.request.top_k == 2


def test_int8_check_records_agreement_and_gates_int8(ctx):
    from modules.understanding.classify.int8 import export_dir, read_record, write_record
    from modules.understanding.classify.int8_job import ClassifyInt8Request
    from modules.understanding.classify.job import ClassifyRequest
    from modules.understanding.image_models import load_image_model

    own_images(ctx)
    with pytest.raises(Exception, match="holds 0 image"):
        submit_job(ctx, ClassifyInt8Request(), owner="test")   # the gallery is empty
    job = run(ctx, ClassifyInt8Request(source="folder", folder="mine", batch=4))
    record = job.result
    assert record.images == 8 and record.passed and record.agreement >= 0.97
    assert record.int8_mb < record.float_mb and record.speedup > 0
    model_id = load_image_model(ctx, None).model_id
    cached = export_dir(ctx, model_id)
    assert (cached / "model.onnx").is_file() and (cached / "model.int8.onnx").is_file()
    assert read_record(ctx, model_id) == record

    image = [b64(scene("triangle", "orange", "gray"))]
    float_job = run(ctx, ClassifyRequest(images=image, top_k=1))
    int8_job = run(ctx, ClassifyRequest(images=image, top_k=1, precision="int8"))
    assert [p["label"] for p in int8_job.result.predictions[0]] == [p["label"] for p in float_job.result.predictions[0]]
    assert int8_job.result.precision == "int8"

    from dataclasses import replace

    write_record(cached, replace(record, agreed=7, agreement=0.875, passed=False))   # a failed check, as recorded
    with pytest.raises(Exception, match=r"not offered: INT8 top-1 agreement 87.5% on 8 images \(failed, needs 97%\)"):
        submit_job(ctx, ClassifyRequest(images=image, precision="int8"), owner="test")


def test_finetune_on_a_labelled_folder_then_classify_with_it(ctx):
    from modules.understanding.classify.finetune_job import ClassifyFinetuneRequest
    from modules.understanding.classify.job import ClassifyRequest
    from modules.understanding.image_models import list_image_models

    labelled = ctx.paths.data_dir / "labelled"
    for label, colour in (("reds", "red"), ("blues", "blue")):
        (labelled / label).mkdir(parents=True)
        for index, shape in enumerate(("circle", "square", "star", "heart", "cross")):
            scene(shape, colour, "white").save(labelled / label / f"{index}.png")
    request = ClassifyFinetuneRequest(folder="labelled", name="colours", base="tiny-vit", epochs=8,
                                      learning_rate=3e-3, batch=4)
    job = run(ctx, request)
    assert job.result["labels"] == ["blues", "reds"] and job.result["held_out_images"] == 2
    assert job.result["train_accuracy"] == 1.0 and job.result["held_out_accuracy"] == 1.0
    assert "colours" in list_image_models(ctx)
    out = run(ctx, ClassifyRequest(images=[b64(scene("diamond", "red", "white"))], model="colours", top_k=1))
    assert out.result.predictions[0][0]["label"] == "reds"
    with pytest.raises(Exception, match="already exists"):
        submit_job(ctx, request, owner="test")
    with pytest.raises(Exception, match="at least two sub-folders"):
        submit_job(ctx, request.model_copy(update={"folder": "labelled/reds", "name": "other"}), owner="test")


def test_classify_sub_tab_handlers(ctx, tmp_path):
    from webui.understand_classify import build_classify_tab
    from webui.understand_tab import follow

    with gr.Blocks():
        image = gr.Image(type="filepath")
        with gr.Tabs():
            tab = build_classify_tab(ctx, image, follow)
    path = tmp_path / "upload.png"
    scene("hexagon", "pink", "green").save(path)
    events = list(tab.classify(str(path), None, "atelier-shapes-vit", "float", 1))
    status, rows, note = events[-1]
    assert "Done" in status and note.startswith("atelier-shapes-vit@")
    assert ["upload.png", 1, "shape=hexagon"] in [row[:3] for row in rows]
    status, *_ = list(tab.classify(None, None, "atelier-shapes-vit", "float", 1))[-1]
    assert "upload an image first" in status
    # the INT8 accordion: the check on a folder of the user's images, its figure in the page
    own_images(ctx)
    q_status, note = list(tab.int8_check("atelier-shapes-vit", "folder", "mine", 97, 8))[-1]
    assert "passed" in q_status and note.startswith("INT8 top-1 agreement")
    assert tab.refresh("tiny-vit")[2].startswith("No INT8 check yet")   # a model with no check yet
