"""The status next to the checkpoint picker: it follows a model load (the page polls while one is under
way), says when no model is loaded, and names the reason when the last load failed."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from modules.app_context import create_app_context
from modules.flags import parse_flags
from modules.models.load_job import LoadModelRequest
from modules.jobs.model import Job, JobState
from webui.app import _model_status


def _ctx(jobs: list[Job], active: object = None) -> SimpleNamespace:
    return SimpleNamespace(queue=SimpleNamespace(list_jobs=lambda limit=100: list(jobs)),
                           models=SimpleNamespace(active=active))


def test_a_load_under_way_is_shown_and_polled() -> None:
    load = Job(id="a", kind="load_model", request=LoadModelRequest(checkpoint="/m/shapes.safetensors"),
               state=JobState.RUNNING)
    text, busy = _model_status(_ctx([load]))
    assert busy and "Loading shapes.safetensors" in text
    load.state = JobState.SUCCEEDED
    model = SimpleNamespace(model=SimpleNamespace(family=SimpleNamespace(label="SD 1.x")), load_seconds=1.25)
    text, busy = _model_status(_ctx([load], model))
    assert not busy and "SD 1.x · loaded in 1.2 s" in text


def test_a_failed_load_names_its_reason(tmp_path: Path) -> None:
    from modules.models.load_job import switch_model

    ckpt_dir = tmp_path / "models" / "Stable-diffusion"
    ckpt_dir.mkdir(parents=True)
    (ckpt_dir / "broken.safetensors").write_bytes(b"this is not a checkpoint")
    ctx = create_app_context(parse_flags(["--data-dir", str(tmp_path), "--skip-load-model-at-start"]))
    try:
        text, busy = _model_status(ctx)
        assert not busy and "No model loaded yet" in text
        job = switch_model(ctx, str(ckpt_dir / "broken.safetensors"))
        assert job.done.wait(60) and job.state is JobState.FAILED
        text, busy = _model_status(ctx)
        assert not busy and 'data-kind="error"' in text and "No model loaded:" in text
        assert "broken.safetensors" in text and "corrupt" in text, text
    finally:
        ctx.close()
