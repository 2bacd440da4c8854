"""Training jobs on Ray actors (``--ray`` with the setting ``ray_training = actors``; docs/scaling.md).

The studio sends a ``train_lora`` (or ``train_embedding``) job's typed request to a free actor, which trains against the job's
session folder in the data dir: a path every node must share (checked at submit, :func:`check_shared`). The
studio follows the actor's progress (steps, loss, sample images written into the session folder) as a
generation's, and passes cancel and interrupt to that actor only (the trainer saves the session when it
stops). When the actor dies, the job is dispatched once more, to another actor, which resumes from the
session's last checkpoint (the trainer's exact resume); a second death fails it with the reason.

With ``ray_training = host`` (the default) training runs on the studio's host as without Ray.
"""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING, Any, Callable

from modules.distributed.follow import CALL_TIMEOUT, follow_call
from modules.distributed.pool import ActorPool, ActorSlot, NoActorLeft
from modules.jobs.model import Job, JobFailure
from modules.training.lora.errors import TrainingError

if TYPE_CHECKING:
    from modules.app_context import AppContext
    from modules.jobs.progress import JobControl

log = logging.getLogger(__name__)

#: the training kinds an actor runs with ``ray_training = actors``, and the module declaring each (its ``KINDS``)
TRAINING_MODULES = {"train_lora": "modules.training.lora.job", "train_embedding": "modules.training.embedding_job"}
TRAINING_KINDS = tuple(TRAINING_MODULES)
#: what the studio writes into the data dir for the actors to read back (the shared-path check)
MARKER = ".ray-shared-check"


class TrainingActorDied(Exception):
    """The actor running a training job died."""


def kind_of(name: str) -> Any:
    """The :class:`~modules.jobs.kinds.JobKind` of training kind ``name`` (for an actor, which has no registry)."""
    import importlib

    module = importlib.import_module(TRAINING_MODULES[name])
    return next(kind for kind in module.KINDS if kind.name == name)


def on_actors(ctx: "AppContext") -> bool:
    return ctx.settings.current.ray_training == "actors"


class SharedCheck:
    """Whether each actor sees the studio's data dir at the same path: the studio writes a random token into
    ``<data dir>/training/``, an actor reads it back by the same path (each actor checked once)."""

    def __init__(self, ray: Any, data_dir: Any) -> None:
        self._ray = ray
        self._marker = data_dir / "training" / MARKER
        self._token = secrets.token_hex(16)
        self._seen: set[str] = set()

    def check(self, slots: list[ActorSlot], shown: Callable[[Any], str]) -> None:
        alive = [slot for slot in slots if slot.alive and slot.name not in self._seen]
        if not alive:
            return
        self._marker.parent.mkdir(parents=True, exist_ok=True)
        self._marker.write_text(self._token, encoding="utf-8")
        for slot in alive:
            try:
                seen = self._ray.get(slot.handle.sees.remote(str(self._marker), self._token), timeout=CALL_TIMEOUT)
            except Exception:  # noqa: BLE001 - a lost actor is not used; a busy one is asked again next time
                continue
            if not seen:
                raise TrainingError(
                    f"ray_training = actors needs the studio's data dir at the same path on every Ray node (a shared "
                    f"mount): the actor {slot.name} does not see {shown(self._marker.parent.parent)}. Mount it there, "
                    "or set ray_training = host (Settings → System) to train on the studio's host")
            self._seen.add(slot.name)


def check_request(ctx: "AppContext", request: Any, shared: SharedCheck, pool: ActorPool) -> None:
    """At submit, with ``ray_training = actors``: refuse what an actor cannot run, saying why."""
    if not on_actors(ctx) or getattr(request, "kind", None) not in TRAINING_KINDS:
        return
    if getattr(request, "devices", "single") != "single":
        raise TrainingError(f"devices {request.devices!r} runs several processes on the studio's host; on a Ray "
                            "actor training uses the actor's one device: use devices single, or set ray_training = "
                            "host")
    shared.check(pool.slots, ctx.paths.shown)


def run_training(ctx: "AppContext", ray: Any, pool: ActorPool, shared: SharedCheck, job: Job,
                 control: "JobControl", on_resume: Callable[[], None]) -> Any:
    """Run a training job on an actor; once more on another (resuming its session) when that one dies."""
    request = job.request
    try:
        check_request(ctx, request, shared, pool)
    except TrainingError as exc:
        raise JobFailure(str(exc)) from None
    settings = ctx.settings.current
    if not request.checkpoint and not settings.sd_model_checkpoint and ctx.models.active is not None:
        # "the loaded one": the studio's, by name (sent in the settings, so the session's request is unchanged)
        settings = settings.model_copy(update={"sd_model_checkpoint": ctx.catalog.title(ctx.models.active.info)})
    settings_json = settings.model_dump_json()
    request_json = request.model_dump_json()
    deaths: list[str] = []
    while True:
        control.progress.text = "waiting for a Ray actor"
        try:
            slot = pool.acquire(job.id, None, retry=bool(deaths), stop=lambda: control.should_stop)
        except NoActorLeft as exc:
            raise JobFailure(f"{exc}{'; ' + deaths[-1] if deaths else ''}") from None
        if slot is None:  # stopped before an actor was free: the session is as it was
            return {"name": request.name, "stopped": True, "of": request.steps,
                    "note": "stopped before it started: submit the same request to resume from the last saved step"}
        held = slot.checkpoint  # training loads its own copy: the actor's generation model stays as it was
        try:
            answer = _follow(ray, slot, job, control, request_json, settings_json)
        except TrainingActorDied as exc:
            reason = f"the Ray actor {slot.name} running it died: {exc}"
            log.warning("training job %s: %s", job.id, reason)
            pool.mark_dead(slot, str(exc))
            deaths.append(reason)
            if len(deaths) > 1:
                raise JobFailure(f"{reason} (it had already been resumed once after {deaths[0]})") from None
            on_resume()
            control.progress.text = f"{reason}; resuming on another actor from its session's last checkpoint"
            continue
        finally:
            pool.release(slot, held)
        break
    if "error" in answer:
        raise JobFailure(answer["error"])
    result = answer["result"]
    if deaths:
        result["resumed_after"] = deaths[0]
    return result


def _follow(ray: Any, slot: ActorSlot, job: Job, control: "JobControl", request_json: str,
            settings_json: str) -> dict[str, Any]:
    """Run the training on ``slot``'s actor: copy its progress, pass stops on; its answer."""
    pending = slot.handle.train.remote(job.id, job.kind, request_json, settings_json)
    shape: list[int | None] = [None]

    def mirror(progress: dict[str, Any]) -> None:
        if progress["total_steps"] != shape[0]:
            shape[0] = progress["total_steps"]
            control.begin(1, shape[0], text=progress["text"])
        control.progress.text = progress["text"]
        if progress["step"] != control.progress.step:
            control.step(progress["step"])

    return follow_call(ray, slot, job.id, pending, control, mirror, died=TrainingActorDied)

