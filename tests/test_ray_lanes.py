"""The device lane on a local Ray cluster (issue 30): two single-threaded CPU actors on 127.0.0.1, tiny models.

The studio's SQLite queue stays the source of truth; the actors run the generations and send the images
back, the studio saves them. Skipped, saying why, where Ray is not installed (requirements-ray.txt).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from modules.generation.requests import Txt2ImgRequest
from modules.jobs.model import JobState
from modules.jobs.submit import submit_job

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
SECOND = "tiny-sd1-b.safetensors"


def _ray_missing() -> str | None:
    try:
        import ray  # noqa: F401
    except ImportError as exc:
        return f"Ray is not installed (pip install -r requirements-ray.txt): {exc}"
    return None


needs_ray = pytest.mark.skipif(_ray_missing() is not None, reason=str(_ray_missing()))


@pytest.fixture(scope="module")
def ray_studio(studio_factory: Any) -> Any:
    def second_checkpoint(data: Path, ckpt_dir: Path) -> None:
        shutil.copyfile(next(ckpt_dir.glob("*.safetensors")), ckpt_dir / SECOND)

    return studio_factory(("--nowebui", "--api", "--ray", "auto", "--ray-cpu-actors", "2"), load=False,
                          prepare=second_checkpoint, name="ray")


def _request(checkpoint: str, steps: int = 3, **extra: Any) -> Txt2ImgRequest:
    fields: dict[str, Any] = {"prompt": "a red square", "steps": steps, "width": 64, "height": 64, "seed": 1,
                              "checkpoint": checkpoint, "save_images": True, **extra}
    return Txt2ImgRequest(**fields)


def _first(srv: Any) -> str:
    return srv.checkpoints[0].name


def _wait_running_on_actor(ctx: Any, job: Any, timeout: float = 60) -> Any:
    """The actor slot running ``job`` once it has made a step."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        slot = next((s for s in ctx.cluster.pool.slots if s.job == job.id), None)
        if slot is not None and job.control.progress.step > 0:
            return slot
        assert not job.done.is_set(), f"the job ended before it could be seen running: {job.error}"
        time.sleep(0.05)
    raise AssertionError("the job never ran on an actor")


@needs_ray
def test_jobs_from_several_clients_all_succeed_and_both_actors_serve(ray_studio: Any) -> None:
    ctx = ray_studio.ctx
    jobs = [submit_job(ctx, _request(_first(ray_studio) if i % 2 else SECOND, seed=i), owner=f"client-{i % 4}")
            for i in range(16)]
    for job in jobs:
        ctx.queue.wait(job.id, 120)
    assert [job.state for job in jobs] == [JobState.SUCCEEDED] * 16, [job.error for job in jobs]
    for job in jobs:
        assert len(job.result.images) == 1
        path = job.result.paths[0]
        assert path is not None and path.is_file()  # written by the studio, under its own outputs
        assert Path(path).resolve().is_relative_to(ctx.paths.outputs_dir.resolve())
        assert "Steps: 3" in job.result.infotexts[0]
        assert job.result_meta["images"][0]["path"] == str(path)  # recorded in the job store as ever
    served = {row["name"]: row["jobs"] for row in ctx.cluster.state()}
    assert len(served) == 2 and all(count > 0 for count in served.values()), served
    # the A1111 route sees the same studio: its image comes back from an actor
    with ray_studio.client() as client:
        answer = client.post("/sdapi/v1/txt2img", json={"prompt": "x", "steps": 2, "width": 64, "height": 64,
                                                         "override_settings": {"sd_model_checkpoint": SECOND}})
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["images"]) == 1


@needs_ray
def test_cluster_route_shows_each_actor(ray_studio: Any) -> None:
    with ray_studio.client() as client:
        answer = client.get("/api/v1/cluster")
        memory = client.get("/sdapi/v1/memory").json()
    assert answer.status_code == 200, answer.text
    actors = answer.json()["actors"]
    assert [a["name"] for a in actors] == ["cpu-0", "cpu-1"]
    assert all(a["alive"] and a["device"] == "cpu" and a["loaded"] and a["job"] is None for a in actors), actors
    assert [a["name"] for a in memory["cluster"]] == ["cpu-0", "cpu-1"]
    # the UI's line (the Models tab) says the same
    import gradio as gr

    from webui.cluster_line import build_cluster_line, cluster_html

    with gr.Blocks():
        assert build_cluster_line(ray_studio.ctx, gr.Button()) is not None
    line = cluster_html(ray_studio.ctx)
    assert "cpu-0 [cpu]" in line and "cpu-1 [cpu]" in line and "idle" in line


@needs_ray
def test_model_affinity_avoids_reloads(ray_studio: Any) -> None:
    ctx = ray_studio.ctx
    before = sum(row["loads"] for row in ctx.cluster.state())
    for i in range(6):  # one at a time, alternating: each goes to the free actor that holds its checkpoint
        job = submit_job(ctx, _request(_first(ray_studio) if i % 2 else SECOND), owner="affinity")
        ctx.queue.wait(job.id, 60)
        assert job.state is JobState.SUCCEEDED, job.error
    loads = sum(row["loads"] for row in ctx.cluster.state()) - before
    assert loads <= 2, f"{loads} model loads for 6 jobs on 2 checkpoints"  # without affinity: one per job
    holding = sorted(str(row["checkpoint"]) for row in ctx.cluster.state())
    assert len(set(holding)) == 2, holding


@needs_ray
def test_a_cancel_stops_only_its_job(ray_studio: Any) -> None:
    ctx = ray_studio.ctx
    doomed = submit_job(ctx, _request(SECOND, steps=150, width=128, height=128), owner="a")
    other = submit_job(ctx, _request(_first(ray_studio), steps=40), owner="b")
    _wait_running_on_actor(ctx, doomed)
    _wait_running_on_actor(ctx, other)
    deadline = time.time() + 30  # the actor's progress and live preview reach the studio's JobControl
    while (preview := doomed.control.preview_png()) is None:
        assert time.time() < deadline and not doomed.done.is_set(), "no preview came back from the actor"
        time.sleep(0.1)
    assert preview.startswith(b"\x89PNG") and doomed.control.snapshot().total_steps == 150
    assert ctx.queue.position(doomed.id) == 0 and ctx.queue.position(other.id) == 0  # both running at once
    assert ctx.queue.cancel(doomed.id)
    ctx.queue.wait(doomed.id, 60)
    ctx.queue.wait(other.id, 120)
    assert doomed.state is JobState.CANCELLED
    assert other.state is JobState.SUCCEEDED and not other.result.interrupted, other.error
    assert all(row["alive"] for row in ctx.cluster.state())


@needs_ray
def test_an_interrupt_reaches_only_the_actor_running_that_job(ray_studio: Any) -> None:
    ctx = ray_studio.ctx
    stopped = submit_job(ctx, _request(SECOND, steps=150, width=128, height=128), owner="a")
    other = submit_job(ctx, _request(_first(ray_studio), steps=40), owner="b")
    _wait_running_on_actor(ctx, stopped)
    _wait_running_on_actor(ctx, other)
    assert ctx.queue.interrupt(job_id=stopped.id) is stopped
    ctx.queue.wait(stopped.id, 60)
    ctx.queue.wait(other.id, 120)
    assert stopped.state is JobState.SUCCEEDED and stopped.result.interrupted  # kept what it made, as in A1111
    assert other.state is JobState.SUCCEEDED and not other.result.interrupted, other.error


def _training_images(folder: Path) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(2):
        picture = Image.new("RGB", (64, 64), (40 * i, 200, 90))
        picture.paste((250, 20, 20), (10 + 10 * i, 16, 40, 48))
        picture.save(folder / f"{i}.png")


def _lora_tensors(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(path))


@needs_ray
def test_training_on_actors_resumes_on_another_actor_when_its_actor_dies(ray_studio: Any) -> None:
    """ray_training = actors: a train_lora job runs on an actor; killed mid-training, it resumes on the other
    actor from the session's last checkpoint and ends with the adapter a straight run makes."""
    import ray

    from modules.distributed.pool import ActorSlot
    from modules.distributed.ray_workers import worker_argv
    from modules.distributed.worker import StudioWorker
    from modules.training.lora.request import TrainLoraRequest
    from modules.training.lora.session import Session

    ctx = ray_studio.ctx
    _training_images(ctx.paths.data_dir / "train" / "ray")
    base = TrainLoraRequest(name="ray-straight", dataset="train/ray", checkpoint=_first(ray_studio), steps=6,
                            checkpoint_every=2, seed=3, learning_rate=1e-3, resolution=64)
    ctx.settings.update({"ray_training": "actors"})
    try:
        with pytest.raises(Exception, match="devices 'cpu:2' runs several processes"):
            submit_job(ctx, base.model_copy(update={"devices": "cpu:2"}), owner="t")
        served = sum(s.jobs for s in ctx.cluster.pool.slots)
        straight = submit_job(ctx, base, owner="t")
        ctx.queue.wait(straight.id, 120)
        assert straight.state is JobState.SUCCEEDED, straight.error
        assert sum(s.jobs for s in ctx.cluster.pool.slots) == served + 1  # it ran on an actor
        assert straight.control.snapshot().total_steps == 6  # the actor's progress, mirrored here
        resumed_req = base.model_copy(update={"name": "ray-resumed"})
        session = Session.for_request(ctx.paths.data_dir, resumed_req)
        job = submit_job(ctx, resumed_req, owner="t")
        deadline = time.time() + 60
        while (session.saved_step() or 0) < 2:  # a checkpoint exists: the actor is mid-training
            assert time.time() < deadline and not job.done.is_set(), job.error
            time.sleep(0.01)
        slot = next(s for s in ctx.cluster.pool.slots if s.job == job.id)
        ray.kill(slot.handle)
        # a new actor takes the dead one's place (its CPU is free now), so the later tests still have two
        spare = ray.remote(StudioWorker).options(num_cpus=1, num_gpus=0, max_concurrency=4, max_restarts=0).remote(
            "cpu-2", worker_argv(ctx, cpu=True), 1)
        ctx.queue.wait(job.id, 120)
        assert job.state is JobState.SUCCEEDED, job.error
        assert job.result["steps"] == 6 and f"the Ray actor {slot.name} running it died" in job.result["resumed_after"]
        assert ctx.cluster.resumed == 1 and ctx.cluster.retried == 0  # the generations' counter untouched
        # resumed from the checkpoint, not from scratch: each step logged once (a fresh start would log 1.. again)
        assert [r["step"] for r in session.losses()] == list(range(1, 7))
        got = _lora_tensors(ctx.paths.lora_dir / "ray-resumed.safetensors")
        expected = _lora_tensors(ctx.paths.lora_dir / "ray-straight.safetensors")
        assert got.keys() == expected.keys() and got
        assert max(float((got[k] - expected[k]).abs().max()) for k in got) <= 1e-6
        ray.get(spare.state.remote(), timeout=120)
        ctx.cluster.pool.add(ActorSlot("cpu-2", spare, "1 CPU"))
        # a cancel reaches the actor training that job, which stops and keeps its last checkpoint
        stopped_req = base.model_copy(update={"name": "ray-cancelled", "steps": 200})
        stopped_session = Session.for_request(ctx.paths.data_dir, stopped_req)
        stopped = submit_job(ctx, stopped_req, owner="t")
        while (stopped_session.saved_step() or 0) < 2:
            assert time.time() < deadline + 60 and not stopped.done.is_set(), stopped.error
            time.sleep(0.01)
        assert ctx.queue.cancel(stopped.id)
        ctx.queue.wait(stopped.id, 60)
        assert stopped.state is JobState.CANCELLED
        assert stopped_session.state_file.is_file() and 2 <= stopped_session.saved_step() < 200
        assert sum(s.alive for s in ctx.cluster.pool.slots) == 2  # no actor was lost to the cancel
        # textual inversion goes the same way
        from modules.training.embedding_request import TrainEmbeddingRequest

        served = sum(s.jobs for s in ctx.cluster.pool.slots)
        embedding = submit_job(ctx, TrainEmbeddingRequest(name="ray-word", dataset="train/ray", checkpoint=_first(
            ray_studio), steps=2, resolution=64), owner="t")
        ctx.queue.wait(embedding.id, 60)
        assert embedding.state is JobState.SUCCEEDED, embedding.error
        assert embedding.result["steps"] == 2 and (ctx.paths.embeddings_dir / "ray-word.safetensors").is_file()
        assert sum(s.jobs for s in ctx.cluster.pool.slots) == served + 1
    finally:
        ctx.settings.update({"ray_training": "host"})


@needs_ray
def test_an_actor_killed_mid_job_reruns_that_job_on_the_other(ray_studio: Any) -> None:
    import ray

    ctx = ray_studio.ctx
    long = submit_job(ctx, _request(SECOND, steps=150), owner="a")
    slot = _wait_running_on_actor(ctx, long)
    queued = [submit_job(ctx, _request(_first(ray_studio)), owner="b") for _ in range(3)]
    ray.kill(slot.handle)
    ctx.queue.wait(long.id, 120)
    for job in queued:
        ctx.queue.wait(job.id, 120)
    assert long.state is JobState.SUCCEEDED, long.error
    assert long.result.paths[0] is not None and long.result.paths[0].is_file()
    assert [job.state for job in queued] == [JobState.SUCCEEDED] * 3  # nothing lost
    assert ctx.cluster.retried == 1
    rows = {row["name"]: row for row in ctx.cluster.state()}
    assert rows[slot.name]["alive"] is False and rows[slot.name]["error"]
    assert sum(row["alive"] for row in rows.values()) == 1


def test_without_ray_nothing_imports_ray(tmp_path: Path) -> None:
    code = f"""
import json, sys
from modules.flags import parse_flags
from modules.app_context import create_app_context
from modules.server import create_http_app
ctx = create_app_context(parse_flags(['--api', '--data-dir', {str(tmp_path)!r}]))
create_http_app(ctx)
print(json.dumps({{"ray": "ray" in sys.modules, "cluster": ctx.cluster is None}}))
ctx.close()
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == {"ray": False, "cluster": True}


@needs_ray
def test_when_the_last_actor_dies_mid_job_the_job_fails_saying_why(ray_studio: Any) -> None:
    import ray

    ctx = ray_studio.ctx
    job = submit_job(ctx, _request(SECOND, steps=150), owner="a")
    slot = _wait_running_on_actor(ctx, job)
    ray.kill(slot.handle)
    ctx.queue.wait(job.id, 60)
    assert job.state is JobState.FAILED
    assert "no Ray actor is left" in job.error and f"the Ray actor {slot.name} running it died" in job.error
    late = submit_job(ctx, _request(SECOND), owner="b")
    ctx.queue.wait(late.id, 30)
    assert late.state is JobState.FAILED and "no Ray actor is left" in late.error


@needs_ray
def test_an_unreachable_cluster_stops_the_launch_with_one_line(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "launch.py", "--nowebui", "--ray", "127.0.0.1:1", "--data-dir",
                          str(tmp_path), "--skip-load-model-at-start"], cwd=REPO, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 1
    assert "launch.py: error: cannot reach the Ray cluster at 127.0.0.1:1" in out.stderr
    assert "Traceback" not in out.stderr


def test_training_on_actors_is_refused_at_submit_when_an_actor_does_not_see_the_data_dir(tmp_path: Path) -> None:
    """The shared-path check (no Ray needed): an actor that cannot read the studio's token by the same path
    refuses the submit, naming it; one that can is asked once."""
    from modules.distributed.pool import ActorSlot
    from modules.distributed.training import SharedCheck
    from modules.training.lora.errors import TrainingError

    class Call:
        def __init__(self, answer: Any) -> None:
            self.remote = answer

    class Handle:
        def __init__(self, shared: bool) -> None:
            self.asked = 0

            def sees(path: str, token: str) -> bool:
                self.asked += 1
                return shared and Path(path).read_text(encoding="utf-8") == token

            self.sees = Call(sees)

    class FakeRay:
        @staticmethod
        def get(value: Any, timeout: float | None = None) -> Any:
            return value

    good, bad = Handle(True), Handle(False)
    check = SharedCheck(FakeRay(), tmp_path)
    check.check([ActorSlot("cpu-0", good)], str)
    check.check([ActorSlot("cpu-0", good)], str)
    assert good.asked == 1 and (tmp_path / "training").is_dir()
    with pytest.raises(TrainingError, match=r"the actor cpu-1 does not see .*ray_training = host"):
        check.check([ActorSlot("cpu-0", good), ActorSlot("cpu-1", bad)], str)
