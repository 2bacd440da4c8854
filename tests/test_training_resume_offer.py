"""After a crash the studio offers to resume a training job (issue 27, point 4 of the remaining work).

The store state a ``kill -9`` leaves is made by hand: the session folder with its last checkpoint (trained for
real, stopped after a checkpoint) and the job's row still ``running``. At the next start the job is
``interrupted`` (not failed), shown as "interrupted — resume?" in the Train tab's Sessions and over the native
API, and resuming it continues from that checkpoint; kinds that do not offer it are failed as before.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from modules.jobs import interrupted
from modules.jobs.kinds import JobKindRegistry
from modules.jobs.model import CRASH_REASON, INTERRUPTED_REASON, JobState
from modules.jobs.queue import JobQueue
from modules.jobs.store import JobStore, NewJob
from modules.training.lora.request import TrainLoraRequest

NAME = "crashed"


class Killed(Exception):
    """The process dying mid-run."""


def _running_row(store: JobStore, job_id: str, seq: int, kind: str, request_json: str) -> None:
    """A job recorded as submitted and started, and never finished: what a killed process leaves."""
    store.insert(NewJob(id=job_id, seq=seq, kind=kind, owner="t", source="api", request_json=request_json,
                        request_hash=None, idempotency_key=None, resumable=True, keep_outputs=False,
                        created_at=time.time()))
    store.mark_started(job_id, time.time())


def test_restore_offers_resume_only_to_kinds_that_declare_it(tmp_path: Path) -> None:
    from modules.generation.job_kinds import KINDS as GENERATION_KINDS
    from modules.training.lora.job import KINDS as LORA_KINDS

    registry = JobKindRegistry([*GENERATION_KINDS, *LORA_KINDS])
    store = JobStore(tmp_path / "jobs.sqlite3")
    lora = TrainLoraRequest(name=NAME, dataset="train/shape", steps=6)
    _running_row(store, "lora-job", 1, "train_lora", lora.model_dump_json())
    _running_row(store, "gen-job", 2, "txt2img", json.dumps({"kind": "txt2img", "prompt": "a shape"}))
    store.close()

    store = JobStore(tmp_path / "jobs.sqlite3")
    queue = JobQueue({}, store=store, request_types=registry.request_types(), lanes=registry.lane_of)
    report = queue.restore(offers_resume=registry.offers_resume)
    assert (report.interrupted, report.failed_running) == (1, 1)
    kept = queue.lookup("lora-job")
    assert kept.state is JobState.INTERRUPTED and kept.error == INTERRUPTED_REASON and kept.state.finished
    assert kept.request == lora  # read back, ready to be submitted again
    failed = queue.lookup("gen-job")
    assert failed.state is JobState.FAILED and failed.error == CRASH_REASON

    # resuming (the Train tab's Resume and POST /api/v1/jobs/{id}/resume both call this) submits the same request
    ctx = SimpleNamespace(queue=queue, store=store)
    assert [job.id for job in interrupted.offered(ctx, "train_lora")] == ["lora-job"]
    submitted: list = []

    def submit(ctx, request, *, owner, source):
        submitted.append((request, owner, source))
        return SimpleNamespace(id="new-job")

    assert interrupted.resume(ctx, "lora-job", owner="u", source="webui", submit=submit).id == "new-job"
    assert submitted == [(lora, "u", "webui")]
    assert queue.lookup("lora-job").result_meta == {"resumed_as": "new-job"} and not interrupted.offered(ctx)
    with pytest.raises(interrupted.NotResumable, match="resumed already, as job new-job"):
        interrupted.resume(ctx, "lora-job", submit=submit)
    with pytest.raises(interrupted.NotResumable, match="only a job interrupted by a crash"):
        interrupted.resume(ctx, "gen-job", submit=submit)
    assert len(submitted) == 1
    store.close()


def _images(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(2):
        picture = Image.new("RGB", (64, 64), (40 * i, 200, 90))
        picture.paste((250, 20, 20), (16 + 8 * i, 16, 48, 48))
        picture.save(folder / f"{i}.png")


def test_interrupted_lora_session_is_offered_and_resumes_from_its_checkpoint(studio_factory, model_cache_dir) -> None:
    from modules.jobs.progress import JobControl
    from modules.models.loader import LoadOptions, load_model
    from modules.training.lora.dataset import load_dataset
    from modules.training.lora.session import Session
    from modules.training.lora.trainer import train
    from modules.training.sessions import list_sessions

    req = TrainLoraRequest(name=NAME, dataset="train/shape", steps=4, checkpoint_every=2, resolution=64, seed=2,
                           learning_rate=1e-3, checkpoint="tiny-sd1.safetensors")
    before: dict[str, list[dict]] = {}

    def crash_in_the_middle(data: Path, ckpt_dir: Path) -> None:
        _images(data / "train" / "shape")
        model = load_model(next(ckpt_dir.iterdir()), LoadOptions(cache_dir=model_cache_dir))
        control = JobControl()

        def die_after_step_3(step: int, loss: float) -> None:  # the last checkpoint is step 2's
            if step == 3:
                raise Killed  # stands for the kill: nothing after step 3 is saved

        session = Session.for_request(data, req)
        images = load_dataset(data / "train" / "shape", [data], 64, req.instance_prompt)
        with pytest.raises(Killed):
            train(req, model, images, session, control, on_log=die_after_step_3)
        assert session.saved_step() == 2
        before["log"] = session.losses()
        store = JobStore(data / "jobs.sqlite3")
        _running_row(store, "crashed-job", 1, "train_lora", req.model_dump_json())
        store.close()

    srv = studio_factory(("--nowebui",), prepare=crash_in_the_middle, load=False)  # the job loads its own copy
    ctx = srv.ctx
    with srv.client() as http:
        status = http.get("/api/v1/jobs/crashed-job").json()
        assert status["state"] == "interrupted" and status["resume_offered"] is True, status
        listed = http.get("/api/v1/jobs", params={"state": "interrupted"}).json()["jobs"]
        assert [j["id"] for j in listed] == ["crashed-job"]
        session = next(s for s in list_sessions(ctx) if s.name == NAME)
        assert session.state == "interrupted" and session.interrupted_job == "crashed-job"
        assert session.row()[-1] == "interrupted — resume?" and session.step == 2

        resumed = http.post("/api/v1/jobs/crashed-job/resume")
        assert resumed.status_code == 201, resumed.text
        new_id = resumed.json()["id"]
        ctx.queue.wait(new_id, 300)
        job = ctx.queue.lookup(new_id)
        assert job.state is JobState.SUCCEEDED, job.error
        assert job.result["steps"] == 4 and (ctx.paths.lora_dir / f"{NAME}.safetensors").is_file()
        log = Session.for_request(ctx.paths.data_dir, req).losses()
        assert [r["step"] for r in log] == [1, 2, 3, 4]
        assert log[:2] == before["log"][:2]  # continued from step 2's checkpoint: steps 1-2 were not redone
        assert log[2]["time"] > before["log"][2]["time"]  # step 3 (after the checkpoint) was done again

        old = http.get("/api/v1/jobs/crashed-job").json()
        assert old["resumed_as"] == new_id and old["resume_offered"] is False
        again = http.post("/api/v1/jobs/crashed-job/resume")
        assert again.status_code == 409 and "resumed already" in again.text
        assert next(s for s in list_sessions(ctx) if s.name == NAME).state == "finished"
        assert http.post(f"/api/v1/jobs/{new_id}/resume").status_code == 409  # only interrupted jobs
