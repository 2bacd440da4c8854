"""The training sessions in the data dir (``<data>/training/<kind>/<name>/``): list, resume, delete.

A session folder holds the request (``config.json``), the saved step (``step.json``), the loss log and
the state to resume from (:mod:`modules.training.lora.session`). Resuming re-submits the stored request
(the job continues from the saved step); deleting moves the folder to ``<data>/trash/training/``, never
while a job of that session is waiting or running.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from pydantic import BaseModel

if TYPE_CHECKING:
    from modules.app_context import AppContext
    from modules.jobs.model import Job

#: session folder kind -> job kind name
JOB_KINDS = {"lora": "train_lora", "embedding": "train_embedding", "dreambooth": "train_dreambooth"}


class SessionNotFound(LookupError):
    """No such session (message for the user)."""


class SessionBusy(RuntimeError):
    """The session has a waiting or running job (message for the user)."""


@dataclass(frozen=True)
class SessionInfo:
    kind: str           # "lora" | "embedding"
    name: str
    folder: Path
    step: int
    of: int
    last_loss: float | None
    state: str          # "running" | "waiting" | "interrupted" | "stopped" | "finished" | "new"
    interrupted_job: str | None = None  # the job a crash interrupted, offered to be resumed

    def row(self) -> list[Any]:
        loss = f"{self.last_loss:.4f}" if self.last_loss is not None else ""
        state = "interrupted — resume?" if self.state == "interrupted" else self.state
        return [self.kind, self.name, f"{self.step}/{self.of}", loss, state]


def training_root(data_dir: Path) -> Path:
    return data_dir / "training"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _last_loss(folder: Path) -> float | None:
    path = folder / "loss.jsonl"
    try:
        with path.open("rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - 4096))
            lines = handle.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            return float(json.loads(line)["loss"])
        except (ValueError, KeyError, TypeError):
            continue
    return None


def _jobs_of(ctx: "AppContext", kind: str, name: str) -> list["Job"]:
    job_kind = JOB_KINDS.get(kind)
    return [job for job in ctx.queue.jobs() if job.kind == job_kind and not job.state.finished
            and getattr(job.request, "name", None) == name]


def _interrupted_jobs(ctx: "AppContext") -> dict[tuple[str, str], str]:
    """(session kind, name) -> the newest job of that session a crash interrupted, not resumed yet."""
    from modules.jobs.interrupted import offered

    kinds = {job_kind: kind for kind, job_kind in JOB_KINDS.items()}
    found: dict[tuple[str, str], str] = {}
    for job in offered(ctx):
        name = getattr(job.request, "name", None)
        if job.kind in kinds and isinstance(name, str):
            found.setdefault((kinds[job.kind], name), job.id)
    return found


def session_info(ctx: "AppContext", kind: str, folder: Path,
                 interrupted: dict[tuple[str, str], str] | None = None) -> SessionInfo | None:
    """The session in ``folder``; ``interrupted``: :func:`_interrupted_jobs`, when already read."""
    config = _read_json(folder / "config.json")
    if not isinstance(config, dict):
        return None
    saved = _read_json(folder / "step.json")
    step = int(saved["step"]) if isinstance(saved, dict) and isinstance(saved.get("step"), int) else 0
    of = int(config.get("steps", 0) or 0)
    jobs = _jobs_of(ctx, kind, folder.name)
    interrupted_job = None
    if not jobs and step < of:
        interrupted_job = (interrupted if interrupted is not None else _interrupted_jobs(ctx)).get((kind, folder.name))
    if any(job.started_at is not None for job in jobs):
        state = "running"
    elif jobs:
        state = "waiting"
    elif interrupted_job is not None:
        state = "interrupted"
    elif step == 0 and not (folder / "state.pt").is_file():
        state = "new"
    else:
        state = "finished" if step >= of else "stopped"
    return SessionInfo(kind, folder.name, folder, step, of, _last_loss(folder), state, interrupted_job)


def list_sessions(ctx: "AppContext") -> list[SessionInfo]:
    """Every session with a config, newest first."""
    root = training_root(ctx.paths.data_dir)
    found: list[tuple[float, SessionInfo]] = []
    interrupted = _interrupted_jobs(ctx)
    for kind in JOB_KINDS:
        base = root / kind
        if not base.is_dir():
            continue
        for folder in base.iterdir():
            if not folder.is_dir():
                continue
            info = session_info(ctx, kind, folder, interrupted)
            if info is not None:
                found.append(((folder / "config.json").stat().st_mtime, info))
    return [info for _, info in sorted(found, key=lambda item: -item[0])]


def find_session(ctx: "AppContext", kind: str, name: str) -> SessionInfo:
    if kind not in JOB_KINDS or not name or "/" in name or "\\" in name or name in (".", ".."):
        raise SessionNotFound(f"no training session {kind}/{name}")
    info = session_info(ctx, kind, training_root(ctx.paths.data_dir) / kind / name)
    if info is None:
        raise SessionNotFound(f"no training session {kind}/{name}: it may have been deleted")
    return info


def stored_request(ctx: "AppContext", info: SessionInfo) -> BaseModel:
    """The session's request as its job kind's typed model (the one that made it)."""
    config = _read_json(info.folder / "config.json")
    kind = ctx.kinds.get(JOB_KINDS[info.kind])
    return kind.request.model_validate(config)


def resume(ctx: "AppContext", kind: str, name: str, *, owner: str,
           submit: Callable[..., "Job"] | None = None) -> "Job":
    """Queue the session's stored request again: the job continues from the saved step (a job a crash
    interrupted is resumed, so it is no longer offered)."""
    from modules.jobs import interrupted
    from modules.jobs.submit import submit_job

    info = find_session(ctx, kind, name)
    if info.state in ("running", "waiting"):
        raise SessionBusy(f"the session {name!r} is {info.state} already")
    if info.interrupted_job is not None:
        return interrupted.resume(ctx, info.interrupted_job, owner=owner, source="webui", submit=submit)
    return (submit or submit_job)(ctx, stored_request(ctx, info), owner=owner, source="webui")


def stop(ctx: "AppContext", kind: str, name: str) -> int:
    """Cancel the session's waiting or running jobs (the session keeps its last saved state); how many."""
    return sum(1 for job in _jobs_of(ctx, kind, name) if ctx.queue.cancel(job.id))


def delete(ctx: "AppContext", kind: str, name: str) -> Path:
    """Move the session folder to ``<data>/trash/training/<kind>/<name>-<time>``; returns where it went."""
    info = find_session(ctx, kind, name)
    if info.state in ("running", "waiting"):
        raise SessionBusy(f"the session {name!r} is {info.state}: stop it before deleting it")
    trash = ctx.paths.data_dir / "trash" / "training" / kind
    trash.mkdir(parents=True, exist_ok=True)
    target = trash / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    suffix = 1
    while target.exists():
        target = trash / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{suffix}"
        suffix += 1
    shutil.move(str(info.folder), str(target))
    return target
