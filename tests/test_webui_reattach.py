"""Which job a reloaded page re-attaches to (modules/jobs/reattach.py), on a queue with no worker running:
the remembered job first (when it is this owner's and the tab's kind), else the owner's running job, else
the owner's next waiting job; other owners' jobs and other kinds are never picked; a finished job's images
are read back from its stored paths, only under the outputs folder."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from modules.generation.requests import Img2ImgRequest, Txt2ImgRequest
from modules.jobs.model import JobState
from modules.jobs.queue import JobQueue
from modules.jobs.reattach import job_to_reattach, stored_images


def _queue() -> JobQueue:
    return JobQueue({"txt2img": lambda job, control: None, "img2img": lambda job, control: None})


def _txt(prompt: str = "a") -> Txt2ImgRequest:
    return Txt2ImgRequest(prompt=prompt, steps=2, width=64, height=64)


def test_nothing_to_reattach_for_an_owner_without_jobs() -> None:
    queue = _queue()
    queue.submit(_txt(), owner="webui:bob")
    assert job_to_reattach(queue, "webui:alice", ("txt2img",)) is None
    assert job_to_reattach(queue, "webui:alice", ("txt2img",), remembered="no-such-job") is None


def test_the_owners_next_waiting_job_of_the_tabs_kind() -> None:
    queue = _queue()
    queue.submit(_txt("bob's"), owner="webui:bob")
    img = queue.submit(Img2ImgRequest(prompt="i", init_images=["x"], steps=2), owner="webui")
    first = queue.submit(_txt("first"), owner="webui")
    queue.submit(_txt("second"), owner="webui")
    picked = job_to_reattach(queue, "webui", ("txt2img",))
    assert picked is not None and picked.id == first.id
    assert job_to_reattach(queue, "webui", ("img2img",)).id == img.id
    # a page that has shown the first goes on with the second
    assert job_to_reattach(queue, "webui", ("txt2img",), exclude={first.id}).request.prompt == "second"


def test_the_running_job_comes_before_waiting_ones() -> None:
    queue = _queue()
    queue.submit(_txt("waiting"), owner="webui")
    running = queue.submit(_txt("running"), owner="webui")
    running.state = JobState.RUNNING  # as the worker marks it (no worker runs in this test)
    assert job_to_reattach(queue, "webui", ("txt2img",)).id == running.id


def test_the_remembered_job_even_when_finished_but_only_the_owners_and_the_tabs() -> None:
    queue = _queue()
    done = queue.submit(_txt("done"), owner="webui")
    done.state = JobState.SUCCEEDED
    waiting = queue.submit(_txt("waiting"), owner="webui")
    assert job_to_reattach(queue, "webui", ("txt2img",), remembered=done.id).id == done.id
    # someone else's id, or the wrong tab: ignored, the owner's own unfinished job instead
    assert job_to_reattach(queue, "webui:eve", ("txt2img",), remembered=done.id) is None
    assert job_to_reattach(queue, "webui", ("img2img",), remembered=done.id) is None
    assert job_to_reattach(queue, "webui", ("txt2img",), remembered="gone").id == waiting.id


def test_stored_images_only_existing_files_under_the_outputs(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    (outputs / "day").mkdir(parents=True)
    kept = outputs / "day" / "00001-5.png"
    Image.new("RGB", (8, 8)).save(kept)
    outside = tmp_path / "secret.png"
    Image.new("RGB", (8, 8)).save(outside)
    queue = _queue()
    job = queue.submit(_txt(), owner="webui")
    job.result_meta = {"images": [
        {"path": str(kept), "seed": 5, "infotext": "a\nSteps: 2"},
        {"path": str(outputs / "day" / "missing.png"), "seed": 6, "infotext": ""},
        {"path": str(outside), "seed": 7, "infotext": ""},
        {"path": None, "seed": 8, "infotext": ""}]}
    found = stored_images(job, outputs)
    assert [(item.path, item.seed, item.infotext) for item in found] == [(kept.resolve(), 5, "a\nSteps: 2")]


def test_a_job_finished_before_a_restart_shows_its_saved_images(tmp_path: Path) -> None:
    """The page side (webui/results.py follow): a finished job rebuilt from the job store has no pixels; its
    images are read back from the outputs folder, the grid first for a batch; the line names the job."""
    from types import SimpleNamespace

    from modules.settings import Settings
    from webui.results import follow

    outputs = tmp_path / "outputs"
    (outputs / "day").mkdir(parents=True)
    paths = []
    for seed, colour in ((11, "red"), (12, "blue")):
        paths.append(outputs / "day" / f"0000{seed}-{seed}.png")
        Image.new("RGB", (8, 8), colour).save(paths[-1])
    job = _queue().submit(_txt("stored"), owner="webui")
    job.state, job.result = JobState.SUCCEEDED, None
    job.result_meta = {"images": [{"path": str(p), "seed": s, "infotext": f"stored\nSteps: 2, Seed: {s}"}
                                  for p, s in zip(paths, (11, 12))]}
    job.done.set()
    ctx = SimpleNamespace(paths=SimpleNamespace(outputs_dir=outputs),
                          settings=SimpleNamespace(current=Settings(return_grid=True)))
    (gallery, status, infotext, texts, seeds, job_id), = list(follow(ctx, job, previews=False))
    assert [caption for _, caption in gallery] == ["grid", "seed 11", "seed 12"]
    assert gallery[0][0].size == (16, 8) and gallery[2][0].getpixel((0, 0)) == (0, 0, 255)
    assert seeds == [11, 11, 12] and infotext.startswith("stored") and texts[2].endswith("Seed: 12")
    assert 'data-state="done"' in status and "finished while the page was away" in status
    assert f'data-job="{job.id}"' in status and job_id == ""

    job.state, job.error = JobState.FAILED, "out of memory"
    (_, status, *_rest), = list(follow(ctx, job, previews=False))
    assert 'data-state="failed"' in status and "out of memory" in status
