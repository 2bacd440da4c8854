"""Gallery search: the embeddings index (SQLite, one vector per image and model id), exact cosine search, the
``gallery_index`` and ``gallery_search`` job kinds on the embedded shapes classifier and a tiny random-weight
CLIP (text search), new images indexed as they are saved, the per-task backend settings, and the Search
sub-tab's handlers."""

from __future__ import annotations

import base64
import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
from PIL import Image
from pydantic import BaseModel

from modules.jobs.kinds import JobKind
from modules.jobs.model import JobState
from modules.jobs.submit import submit_job
from modules.understanding.search.exact import search, top_k
from modules.understanding.search.index import EmbeddingIndex, FileStamp
from modules.understanding.search.jobs import GalleryIndexRequest, GallerySearchRequest
from modules.world.render import render_scene
from modules.world.spec import Scene, Shape

pytestmark = pytest.mark.slow

#: (shape, colour, background, variant): the two variants of a scene (the second turned and shrunk a little) are
#: each other's nearest image
GALLERY = [(shape, colour, background, variant)
           for shape in ("circle", "square", "triangle")
           for colour, background in (("red", "blue"), ("yellow", "black"))
           for variant in ("a", "b")]


def render(shape: str, colour: str, background: str, variant: str) -> Image.Image:
    turn = {"a": {}, "b": {"angle": 7.0, "scale": 0.93}}[variant]
    return render_scene(Scene(background=background, shapes=(Shape(shape=shape, colour=colour, position="centre",
                                                                   size="large", **turn),)), size=64)


def name_of(item: tuple[str, ...]) -> str:
    return "txt2img-images/2026-01-01/" + "-".join(item) + ".png"


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    from modules.app_context import create_app_context
    from modules.flags import parse_flags

    data = tmp_path_factory.mktemp("studio")
    context = create_app_context(parse_flags(["--api", "--data-dir", str(data), "--skip-load-model-at-start",
                                              "--use-cpu", "all"]))
    for item in GALLERY:
        path = context.paths.outputs_dir / name_of(item)
        path.parent.mkdir(parents=True, exist_ok=True)
        render(*item).save(path)
    yield context
    context.close()


def run(ctx, request):
    job = submit_job(ctx, request, owner="test")
    ctx.queue.wait(job.id, 300)
    assert job.state is JobState.SUCCEEDED, job.error
    return job


def refused(ctx, request) -> str:
    with pytest.raises(Exception) as caught:
        submit_job(ctx, request, owner="test")
    return str(caught.value)


# -- pure parts --------------------------------------------------------------------------------------------
def test_index_keeps_models_apart_and_finds_changed_files(tmp_path):
    index = EmbeddingIndex(tmp_path / "e.db")
    assert not index.exists() and index.counts() == {} and index.matrix("a@1").paths == ()
    stamps = [FileStamp("x/1.png", 10, 100), FileStamp("x/2.png", 10, 100)]
    index.add("a@1", stamps, np.array([[3.0, 4.0], [0.0, 2.0]]))
    index.add("b@1", stamps[:1], np.array([[1.0, 0.0, 0.0]]))
    assert index.counts() == {"a@1": 2, "b@1": 1}
    matrix = index.matrix("a@1")
    assert matrix.paths == ("x/1.png", "x/2.png") and matrix.vectors.shape == (2, 2)
    assert np.allclose(matrix.vectors[0], [0.6, 0.8])  # stored normalised
    assert index.matrix("b@1").vectors.shape == (1, 3)  # never mixed with a@1's
    changed = FileStamp("x/1.png", 11, 100)
    assert index.stale("a@1", [changed, stamps[1], FileStamp("x/3.png", 1, 1)]) == [changed,
                                                                                     FileStamp("x/3.png", 1, 1)]
    assert index.vector("a@1", changed) is None and np.allclose(index.vector("a@1", stamps[1]), [0, 1])
    index.add("a@1", [FileStamp("x/3.png", 1, 1), stamps[1]], np.array([[1.0, 0.0], [1.0, 1.0]]))
    updated = index.matrix("a@1")  # the kept matrix updated in place of a full read
    fresh = EmbeddingIndex(tmp_path / "e.db").matrix("a@1")
    assert sorted(updated.paths) == list(fresh.paths) == ["x/1.png", "x/2.png", "x/3.png"]
    for path, row in zip(fresh.paths, fresh.vectors):
        assert np.allclose(updated.vectors[updated.paths.index(path)], row)
    assert index.keep_only(["x/2.png"]) == 3 and index.counts() == {"a@1": 1}
    again = EmbeddingIndex(tmp_path / "e.db")  # persisted
    assert again.matrix("a@1").paths == ("x/2.png",)
    index.close()
    again.close()


def test_exact_top_k_is_a_full_sort():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(500, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    query = rng.normal(size=16)
    rows, scores = top_k(vectors, query, 10)
    expected = np.argsort(-(vectors @ (query / np.linalg.norm(query))))[:10]
    assert list(rows) == list(expected) and np.all(np.diff(scores) <= 0)
    paths = [f"p{i}" for i in range(500)]
    hits = search(paths, vectors, vectors[7], 3, exclude="p7")
    assert len(hits) == 3 and "p7" not in [h.path for h in hits]
    assert [h.path for h in search(paths, vectors, vectors[7], 1)] == ["p7"]


# -- through the queue --------------------------------------------------------------------------------------
def test_index_the_gallery_then_find_similar(ctx):
    job = run(ctx, GalleryIndexRequest())
    assert job.result.embedded == len(GALLERY) and job.result_meta["embedded"] == len(GALLERY)
    assert job.lane == "index"
    assert run(ctx, GalleryIndexRequest()).result.embedded == 0  # nothing new or changed
    for item in GALLERY[::2]:
        found = run(ctx, GallerySearchRequest(path=name_of(item), top_k=3)).result
        assert found.hits[0].path == name_of((*item[:3], "b")), found.hits  # its twin, turned a little
        assert name_of(item) not in [h.path for h in found.hits]  # the image searched from is left out
        assert found.searched == len(GALLERY) and found.model == "atelier-shapes-vit"
    buffer = io.BytesIO()
    render("square", "yellow", "black", "b").save(buffer, format="PNG")
    by_image = run(ctx, GallerySearchRequest(image=base64.b64encode(buffer.getvalue()).decode(), top_k=2))
    assert by_image.result_meta["hits"][0]["path"] == name_of(("square", "yellow", "black", "b"))
    assert by_image.result_meta["hits"][0]["score"] > 0.99


def test_match_weights_choose_between_the_subject_and_the_scene(ctx):
    """The shapes classifier embeds in its label space; by default the subject (shape, colour) counts four times the
    scene, and a request's weights can turn that round. A red circle on black is not in the gallery: red circles
    there are on blue, and black backgrounds hold yellow shapes."""
    run(ctx, GalleryIndexRequest())
    buffer = io.BytesIO()
    render("circle", "red", "black", "a").save(buffer, format="PNG")
    image = base64.b64encode(buffer.getvalue()).decode()
    subject = run(ctx, GallerySearchRequest(image=image, top_k=2)).result
    assert [h.path for h in subject.hits] == [name_of(("circle", "red", "blue", v)) for v in "ab"] or \
        {h.path for h in subject.hits} == {name_of(("circle", "red", "blue", v)) for v in "ab"}, subject.hits
    assert subject.weights == {"shape": 1.0, "colour": 1.0, "background": 0.25, "position": 0.25, "size": 0.25}
    scene = run(ctx, GallerySearchRequest(image=image, top_k=2, weights={"shape": 0, "colour": 0})).result
    assert all("-black-" in h.path for h in scene.hits), scene.hits
    assert scene.hits[0].score > 0.95   # background, position and size all match
    assert "no label group 'texture'" in refused(ctx, GallerySearchRequest(image=image, weights={"texture": 1}))
    assert "at least one above 0" in refused(ctx, GallerySearchRequest(
        image=image, weights={g: 0 for g in ("shape", "colour", "background", "position", "size")}))


def test_refusals_say_what_to_do(ctx):
    assert "models/CLIP" in refused(ctx, GallerySearchRequest(text="a red circle"))
    assert "exactly one" in refused(ctx, GallerySearchRequest())
    assert "installed: atelier-shapes-vit" in refused(ctx, GallerySearchRequest(text="x", model="nope"))
    assert "not an image of the outputs folder" in refused(ctx, GallerySearchRequest(path="../settings.json"))
    assert "not an image of the outputs folder" in refused(ctx, GalleryIndexRequest(paths=["../../etc/passwd"]))


def _tiny_clip(folder: Path, cache_dir: Path) -> None:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    from modules.embedded.config import SD1_TOKENIZER_CONFIG
    from modules.models.tokenizers import load_clip_tokenizer

    import torch

    torch.manual_seed(0)
    small = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    config = CLIPConfig(text_config={**small, "vocab_size": 49408, "max_position_embeddings": 77},
                        vision_config={**small, "image_size": 32, "patch_size": 8}, projection_dim=8)
    CLIPModel(config).save_pretrained(folder)
    load_clip_tokenizer(SD1_TOKENIZER_CONFIG, cache_dir)  # the session's vocab.save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)


def test_search_by_text_with_a_clip_model(ctx, model_cache_dir):
    from modules.understanding.search.embedders import open_embedder

    _tiny_clip(ctx.paths.data_dir / "models" / "CLIP" / "tiny", model_cache_dir)
    assert "index it first" in refused(ctx, GallerySearchRequest(text="a red circle", model="clip:tiny"))
    assert run(ctx, GalleryIndexRequest(model="clip:tiny")).result.embedded == len(GALLERY)
    counts = ctx.understanding.embeddings.counts()
    assert [n for mid, n in counts.items() if mid.startswith("clip:tiny@")] == [len(GALLERY)]  # beside the others
    found = run(ctx, GallerySearchRequest(text="a red circle", model="clip:tiny", top_k=5)).result
    embedder = open_embedder(ctx, "clip:tiny")
    matrix = ctx.understanding.embeddings.matrix(found.model_id)
    expected = np.argsort(-(matrix.vectors @ embedder.embed_text(["a red circle"])[0]))[:5]
    assert [h.path for h in found.hits] == [matrix.paths[i] for i in expected]
    assert matrix.vectors.shape[1] == 8  # CLIP's projection, not the classifier's 1024-d or other


class SaveRequest(BaseModel):
    kind: Literal["test_save"] = "test_save"
    name: str


@dataclass
class Saved:
    path: Path


def _save(ctx, job, control) -> Saved:
    path = ctx.paths.outputs_dir / "txt2img-images" / "2026-01-02" / job.request.name
    path.parent.mkdir(parents=True, exist_ok=True)
    render("circle", "red", "blue", "a").save(path)
    return Saved(path)


def _index_jobs(ctx) -> list[Any]:
    return [j for j in ctx.queue.list_jobs(limit=100) if j.kind == "gallery_index" and j.source == "auto-index"]


def _wait_for_index_job(ctx, before: int, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:  # the finished event is published right after the job is done
        jobs = _index_jobs(ctx)
        if len(jobs) > before:
            return jobs[0]
        time.sleep(0.02)
    return None


def test_new_images_are_indexed_as_they_are_saved(ctx):
    from modules.understanding.search.embedders import model_id

    ctx.kinds.register(JobKind(name="test_save", request=SaveRequest, run=_save,
                               describe=lambda r: {"images": [{"path": str(r.path)}]}))
    index = ctx.understanding.embeddings
    assert index.exists()  # indexed by the tests above
    before = len(_index_jobs(ctx))
    run(ctx, SaveRequest(name="new.png"))
    job = _wait_for_index_job(ctx, before)
    assert job is not None and job.request.paths == ["txt2img-images/2026-01-02/new.png"]
    ctx.queue.wait(job.id, 120)
    assert job.state is JobState.SUCCEEDED, job.error
    stamp = FileStamp("txt2img-images/2026-01-02/new.png", 0, 0)
    assert any(p == stamp.path for p in index.matrix(model_id(ctx, "atelier-shapes-vit")).paths)
    ctx.settings.update({"gallery_index_on_save": False})
    try:
        run(ctx, SaveRequest(name="off.png"))
        assert _wait_for_index_job(ctx, before + 1, timeout=0.5) is None
    finally:
        ctx.settings.update({"gallery_index_on_save": True})


class BlockRequest(BaseModel):
    kind: Literal["test_block"] = "test_block"


def test_images_saved_while_indexing_waits_share_one_job(ctx):
    """While generation keeps the index lane paused, the images of later jobs join the one waiting index job."""
    import threading

    from modules.jobs.events import JobEvent
    from modules.understanding.search.auto_index import index_saved

    gate = threading.Event()
    ctx.kinds.register(JobKind(name="test_block", request=BlockRequest, run=lambda c, j, ctl: gate.wait(60)))
    saved = [run(ctx, SaveRequest(name=f"wave-{i}.png")) for i in range(3)]  # auto-indexed on their own
    deadline = time.monotonic() + 60
    while any(not j.state.finished for j in _index_jobs(ctx)) and time.monotonic() < deadline:
        time.sleep(0.02)
    for path in (ctx.paths.outputs_dir / "txt2img-images" / "2026-01-02").glob("wave-*.png"):
        render("square", "red", "blue", "b").save(path)  # changed: to be embedded again
    block = submit_job(ctx, BlockRequest(), owner="test")  # the device lane is busy from now on
    try:
        running = submit_job(ctx, GalleryIndexRequest(paths=["txt2img-images/2026-01-02/wave-0.png"]),
                             source="auto-index")
        while not running.control.paused and time.monotonic() < deadline:  # paused for the device lane
            time.sleep(0.02)
        assert running.control.paused
        index_saved(ctx, JobEvent(1, "finished", saved[1].id, None))
        first = [j for j in _index_jobs(ctx) if j.state is JobState.QUEUED]
        index_saved(ctx, JobEvent(2, "finished", saved[2].id, None))
        waiting = [j for j in _index_jobs(ctx) if j.state is JobState.QUEUED]
        assert len(first) == 1 and len(waiting) == 1 and first[0].state is JobState.CANCELLED
        assert waiting[0].request.paths == ["txt2img-images/2026-01-02/wave-1.png",
                                            "txt2img-images/2026-01-02/wave-2.png"]
    finally:
        gate.set()
    ctx.queue.wait(block.id, 60)
    ctx.queue.wait(waiting[0].id, 120)
    assert running.state is JobState.SUCCEEDED and waiting[0].state is JobState.SUCCEEDED, waiting[0].error
    assert waiting[0].result.embedded == 2


def test_per_task_backend_settings(ctx):
    from modules.understanding.page import default_backend, default_chat_model
    from modules.understanding.tasks.common import chosen_backend

    ctx.settings.update({"understanding_backend_ask": "ocr", "understanding_backend_chat": "ocr"})
    try:
        assert chosen_backend(ctx, None, "understand_ask") == "ocr"
        assert chosen_backend(ctx, None, "understand_caption") == "default"  # the general default
        assert chosen_backend(ctx, "default", "understand_ask") == "default"  # the request's choice wins
        assert default_backend(ctx, task="ask") == "ocr" and default_backend(ctx, task="check") == "default"
        assert default_chat_model(ctx, ["atelier-shapes", "atelier-ocr"]) == "atelier-ocr"
        ctx.settings.update({"understanding_backend": "ocr", "understanding_backend_ask": ""})
        assert chosen_backend(ctx, None, "understand_ask") == "ocr"  # empty: the general one
    finally:
        ctx.settings.update({"understanding_backend_ask": "", "understanding_backend_chat": "",
                             "understanding_backend": "default"})


def test_search_section_handlers(ctx, tmp_path):
    import gradio as gr

    from webui.understand_search import build_search_section
    from webui.understand_tab import follow

    with gr.Blocks():
        image = gr.Image(type="filepath")
        section = build_search_section(ctx, image, follow)
    target = GALLERY[4]
    *_, last = section.search_path(name_of(target), "default", 2)
    bar, items, paths, note = last
    assert "done" in bar and paths[0] == name_of((*target[:3], "b")) and len(items) == 2
    assert items[0][1].startswith("0.9") or items[0][1].startswith("1.0")
    assert "among" in note and "atelier-shapes-vit" in note
    upload = tmp_path / "q.png"
    render(*target).save(upload)
    *_, last = section.search_image(str(upload), "default", 1)
    assert last[2] == [name_of(target)]
    *_, last = section.search_text("a red circle", "default", 3)
    assert "Not started" in last[0] and "embeds images only; choose clip:tiny" in last[0]
    *_, last = section.index_all("default")
    assert "Indexed" in last[0] and "atelier-shapes-vit@" in last[1]
