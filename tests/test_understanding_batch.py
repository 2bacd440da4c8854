"""Batch captioning of a folder (``understand_batch_caption``): a preview writes nothing, a run writes kohya
``.txt`` files beside the images, a second run resumes (skips what has a caption unless overwrite), Interrupt
stops with a summary, a folder outside the data dir and --allowed-dir roots is refused; and
``/sdapi/v1/interrogate`` over the chosen understanding backend (A1111's shape kept)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from modules.jobs.model import JobState
from modules.jobs.submit import submit_job
from modules.understanding.tasks.batch_caption import BatchCaptionRequest, write_caption
from modules.understanding.tasks.common import UnderstandingRequestError
from modules.world.render import render_scene
from modules.world.spec import Scene, Shape
from tests.helpers.fake_openai import FakeOpenAI

pytestmark = pytest.mark.slow

SCENES = (("circle", "red"), ("square", "green"), ("triangle", "yellow"), ("star", "purple"))


@pytest.fixture(scope="module")
def allowed(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("allowed")


@pytest.fixture(scope="module")
def ctx(tmp_path_factory, allowed):
    from modules.app_context import create_app_context
    from modules.flags import parse_flags

    data = tmp_path_factory.mktemp("studio")
    context = create_app_context(parse_flags(["--api", "--data-dir", str(data), "--allowed-dir", str(allowed),
                                              "--skip-load-model-at-start", "--use-cpu", "all"]))
    yield context
    context.close()


def dataset(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for shape, colour in SCENES:
        render_scene(Scene(background="blue", shapes=(Shape(shape=shape, colour=colour, position="centre",
                                                            size="large"),)), size=64).save(folder / f"{shape}.png")
    (folder / "notes.md").write_text("not an image")
    return folder


def run(ctx, request):
    job = submit_job(ctx, request, owner="test")
    ctx.queue.wait(job.id, 300)
    assert job.state is JobState.SUCCEEDED, job.error
    return job.result


def test_preview_writes_nothing_then_write_then_resume(ctx):
    folder = dataset(ctx.paths.data_dir / "sets" / "shapes")
    preview = run(ctx, BatchCaptionRequest(folder="sets/shapes"))
    assert preview.preview and preview.total == 4 and preview.count("previewed") == 4
    assert not list(folder.glob("*.txt"))
    by_name = {item.name: item.caption for item in preview.items}
    assert "red" in by_name["circle.png"] and "circle" in by_name["circle.png"]
    assert preview.folder == "sets/shapes"  # shown relative to the data dir, never an absolute server path

    # a hand-written caption is kept; the rest are written beside the images
    (folder / "star.txt").write_text("my own caption\n")
    written = run(ctx, BatchCaptionRequest(folder=str(folder), preview=False, underscores=True))
    assert written.count("written") == 3 and written.count("skipped") == 1
    assert (folder / "star.txt").read_text() == "my own caption\n"
    tags = (folder / "circle.txt").read_text().strip().split(", ")
    assert tags[0] == "red_circle" and "blue_background" in tags
    assert not list(folder.glob(".*.tmp"))  # atomic writes leave no temporary files
    assert "3 of 4 captioned and written" in written.text() and "1 skipped" in written.text()

    # resume: everything has a caption now; overwrite replaces them
    again = run(ctx, BatchCaptionRequest(folder=str(folder), preview=False))
    assert again.count("skipped") == 4 and again.count("written") == 0
    replaced = run(ctx, BatchCaptionRequest(folder=str(folder), preview=False, overwrite=True, detail="short",
                                            limit=2))
    assert replaced.total == 2 and replaced.count("written") == 2
    short = (folder / "circle.txt").read_text().strip()
    assert "circle" in short and "," not in short  # a short sentence replaced the tags
    assert (folder / "star.txt").read_text() == "my own caption\n"  # past the limit: untouched


def test_allowed_dir_is_usable_and_outside_is_refused(ctx, allowed, tmp_path):
    folder = dataset(allowed / "extra")
    result = run(ctx, BatchCaptionRequest(folder=str(folder), preview=False, limit=1))
    assert result.count("written") == 1 and (folder / "circle.txt").is_file()
    outside = dataset(tmp_path / "outside")
    for typed in (str(outside), "../" * 8 + str(outside).lstrip("/"), "sets/../../../etc"):
        with pytest.raises(UnderstandingRequestError, match="outside the folders"):
            submit_job(ctx, BatchCaptionRequest(folder=typed, preview=False), owner="test")
    assert not list(outside.glob("*.txt"))
    empty = ctx.paths.data_dir / "empty"
    empty.mkdir()
    with pytest.raises(UnderstandingRequestError, match="holds no images"):
        submit_job(ctx, BatchCaptionRequest(folder="empty"), owner="test")
    with pytest.raises(UnderstandingRequestError, match="does not exist"):
        submit_job(ctx, BatchCaptionRequest(folder="nope"), owner="test")
    with pytest.raises(UnderstandingRequestError, match="detail=tags only"):
        submit_job(ctx, BatchCaptionRequest(folder=str(folder), detail="short", underscores=True), owner="test")
    with pytest.raises(Exception, match="extra"):
        BatchCaptionRequest(folder="x", unknown=1)


def test_interrupt_stops_with_a_summary(ctx):
    folder = dataset(ctx.paths.data_dir / "sets" / "stop")
    job = submit_job(ctx, BatchCaptionRequest(folder="sets/stop", preview=False), owner="test")
    job.control.interrupt_event.set()  # before the first image: nothing is written, the summary says so
    ctx.queue.wait(job.id, 120)
    result = job.result
    assert result is not None and result.interrupted
    assert len(result.items) < result.total
    assert "interrupted: run again to resume" in result.text()
    assert len(list(folder.glob("*.txt"))) == len([i for i in result.items if i.status == "written"])


def test_an_unset_service_fails_the_batch_once(ctx):
    folder = dataset(ctx.paths.data_dir / "sets" / "remote")
    job = submit_job(ctx, BatchCaptionRequest(folder="sets/remote", preview=False, backend="remote"), owner="test")
    ctx.queue.wait(job.id, 120)
    assert job.state is JobState.FAILED and "no OpenAI-compatible service is set" in job.error
    assert not list(folder.glob("*.txt"))


def test_the_native_job_api_runs_and_refuses_a_batch(ctx, tmp_path):
    from modules.server import create_http_app

    dataset(ctx.paths.data_dir / "sets" / "api")
    http = TestClient(create_http_app(ctx, with_ui=False), base_url="http://127.0.0.1:7860")
    outside = http.post("/api/v1/jobs", json={"kind": "understand_batch_caption",
                                              "request": {"folder": str(dataset(tmp_path / "elsewhere"))}})
    assert outside.status_code == 400 and "outside the folders" in outside.json()["detail"]
    assert str(ctx.paths.data_dir) not in outside.text  # it names the path as typed, not the server's folders
    made = http.post("/api/v1/jobs", json={"kind": "understand_batch_caption",
                                           "request": {"folder": "sets/api", "limit": 2}})
    assert made.status_code in (200, 201, 202), made.text
    job = ctx.queue.wait(made.json()["id"], 120)
    assert job.state is JobState.SUCCEEDED
    result = http.get(f"/api/v1/jobs/{job.id}/result").json()
    info = result["info"]
    assert info["previewed"] == 2 and info["folder"] == "sets/api" and len(info["items"]) == 2


def test_write_caption_is_atomic(tmp_path):
    target = tmp_path / "a.txt"
    write_caption(target, "one")
    write_caption(target, "two")
    assert target.read_text() == "two\n" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]


# -- /sdapi/v1/interrogate over the chosen understanding backend ---------------------------------------------
def _png() -> str:
    buffer = io.BytesIO()
    render_scene(Scene(background="blue", shapes=(Shape(shape="circle", colour="red", position="centre",
                                                        size="large"),)), size=64).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_interrogate_follows_the_chosen_backend(ctx, monkeypatch):
    from modules.server import create_http_app

    http = TestClient(create_http_app(ctx, with_ui=False), base_url="http://127.0.0.1:7860")
    caption = http.post("/sdapi/v1/interrogate", json={"image": _png(), "model": "clip"})
    assert caption.status_code == 200 and caption.json()["caption"] == \
        "a large red circle in the centre on a blue background"
    tags = http.post("/sdapi/v1/interrogate", json={"image": _png(), "model": "deepdanbooru"}).json()["caption"]
    assert tags.split(", ")[:2] == ["red", "circle"]  # the interrogate kind's own tag form

    monkeypatch.setenv("TEST_VLM_KEY", "sk-remote-secret")
    with FakeOpenAI(answer="red_circle, blue background, (logo)") as fake:
        ctx.settings.update({"vlm_api_base_url": fake.url("ok"), "vlm_api_model": "fake-vlm",
                             "vlm_api_key_env": "TEST_VLM_KEY", "understanding_backend": "remote"})
        try:
            tags = http.post("/sdapi/v1/interrogate", json={"image": _png(), "model": "deepdanbooru"})
            assert tags.status_code == 200 and tags.json() == {"caption": r"red circle, blue background, \(logo\)"}
            assert "booru tags" in str(fake.requests[-1]["body"]["messages"])
            fake.answer = "A red circle sits in the middle of a blue square."
            detailed = http.post("/sdapi/v1/interrogate", json={"image": _png()})
            assert detailed.json() == {"caption": "A red circle sits in the middle of a blue square."}
            assert "in detail" in str(fake.requests[-1]["body"]["messages"])
            unknown = http.post("/sdapi/v1/interrogate", json={"image": _png(), "model": "blip2"})
            assert unknown.status_code == 404 and "Model not found" in unknown.json()["detail"]
        finally:
            ctx.settings.update({"vlm_api_base_url": "", "vlm_api_model": "", "understanding_backend": "default"})
    ctx.settings.update({"understanding_backend": "local:missing"})
    try:
        missing = http.post("/sdapi/v1/interrogate", json={"image": _png()})
        assert missing.status_code == 400 and "no model folder 'missing'" in missing.json()["detail"]
    finally:
        ctx.settings.update({"understanding_backend": "default"})
