"""The device lane's handlers with ``--ray``: generations run on Ray actors, the rest on this host.

One worker thread of the device lane per actor (:meth:`~modules.jobs.queue.JobQueue.set_lane_width`), so
the queue's fairness picks each job as ever. A txt2img or img2img job goes to a free actor
(:class:`~modules.distributed.pool.ActorPool`: model affinity); its worker thread polls the actor's
progress and preview every :data:`~modules.distributed.follow.POLL_SECONDS`, passes cancel, interrupt and
skip to that actor only (:func:`~modules.distributed.follow.follow_call`), and saves the images the actor
sends back with the job's output options. An actor that dies mid-job is marked dead and the job runs again
first on another actor, once; a second death fails it with the reason.
Other device kinds (and generations with scripts, which run in the studio's script host) run here, one
at a time.
Training kinds go to an actor with ``ray_training = actors`` (:mod:`.training`: a dead actor's job resumes
from its session's last checkpoint on another), else run here.
"""

from __future__ import annotations

import io
import logging
import threading
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from modules.distributed.follow import CALL_TIMEOUT, follow_call, short
from modules.distributed.model_transfer import Shipper, TransferError
from modules.distributed.pool import ActorPool, ActorSlot, NoActorLeft
from modules.distributed.training import TRAINING_KINDS, SharedCheck, check_request, on_actors, run_training
from modules.distributed.worker import REMOTE_KINDS
from modules.jobs.lanes import DEVICE_LANE
from modules.jobs.model import Handler, Job, JobFailure
from modules.jobs.progress import JobControl
from modules.models.errors import ModelLoadError

if TYPE_CHECKING:
    from modules.app_context import AppContext
    from modules.distributed.ray_workers import Started

log = logging.getLogger(__name__)

DEFAULT_CHECKPOINT = "(default)"


class ActorDied(Exception):
    """The actor running a job died (killed, its node lost, out of memory)."""


class RayDispatch:
    """The studio's Ray actors and the device lane's handlers that use them."""

    def __init__(self, ctx: "AppContext", started: "Started") -> None:
        self._ctx = ctx
        self._ray = started.ray
        self._owns_ray = started.owns_ray
        self.pool = ActorPool([ActorSlot(name, handle, resources) for name, handle, resources in started.actors])
        self.shipper = Shipper(started.ray.put)  # checkpoints sent through the object store (ray_model_transfer)
        self._local_lock = threading.Lock()  # the device kinds that stay here run one at a time
        self.retried = 0                      # jobs run again after their actor died
        self.resumed = 0                      # training jobs resumed on another actor after theirs died
        self._shared = SharedCheck(started.ray, ctx.paths.data_dir)  # ray_training = actors: the data dir is shared

    # -- handlers ------------------------------------------------------------------------------
    def handlers(self, local: Mapping[str, Handler]) -> Mapping[str, Handler]:
        """``local`` (the registry's dispatch, read live) with the generations sent to the actors."""
        return _Handlers(self, local)

    def handler_for(self, name: str, local: Handler) -> Handler:
        if name in REMOTE_KINDS:
            return lambda job, control: self.run_remote(job, control, local)
        if name in TRAINING_KINDS:
            return lambda job, control: self.run_training(job, control, local)
        return lambda job, control: self.run_local(job, control, local)

    def run_local(self, job: Job, control: JobControl, local: Handler) -> Any:
        with self._local_lock:
            return local(job, control)

    def run_remote(self, job: Job, control: JobControl, local: Handler) -> Any:
        from modules.generation.job_kinds import output_options
        from modules.distributed.wire import unpack_result

        request = job.request
        if request is None or getattr(request, "script", None) or getattr(request, "alwayson_scripts", None):
            return self.run_local(job, control, local)  # scripts run in this studio's script host
        kind = self._ctx.kinds.get(job.kind)
        try:
            if kind.precheck is not None:
                kind.precheck(self._ctx, request)
        except kind.user_errors as exc:
            raise JobFailure(str(exc)) from None
        checkpoint = self._checkpoint_of(request)
        if checkpoint is not None and not request.checkpoint:  # "the loaded one": the studio's choice, by name
            request = request.model_copy(update={"checkpoint": checkpoint})
        try:
            if self._ctx.settings.current.ray_model_transfer == "object_store":
                control.progress.text = "sending the checkpoint to Ray's object store (once per checkpoint)"
            shipment = self._shipment(checkpoint)
        except (TransferError, ModelLoadError) as exc:
            raise JobFailure(str(exc)) from None
        checkpoint = checkpoint or DEFAULT_CHECKPOINT
        request_json = request.model_dump_json()
        deaths: list[str] = []
        while True:
            control.progress.text = "waiting for a Ray actor"
            try:
                slot = self.pool.acquire(job.id, checkpoint, retry=bool(deaths), stop=lambda: control.should_stop)
            except NoActorLeft as exc:
                raise JobFailure(f"{exc}{'; ' + deaths[-1] if deaths else ''}") from None
            if slot is None:  # cancelled (the queue records it so) or interrupted before an actor was free
                return None if control.cancel_event.is_set() else _nothing_made(request)
            try:
                answer = self._follow(slot, job, control, request_json, shipment)
            except ActorDied as exc:
                reason = f"the Ray actor {slot.name} running it died: {exc}"
                log.warning("job %s: %s", job.id, reason)
                self.pool.mark_dead(slot, str(exc))
                deaths.append(reason)
                if len(deaths) > 1:
                    raise JobFailure(f"{reason} (it had already been run again once after {deaths[0]})") from None
                self.retried += 1
                control.progress.text = f"{reason}; running it again on another actor"
                continue
            finally:
                self.pool.release(slot, checkpoint)
            break
        if "error" in answer:
            raise JobFailure(answer["error"])
        return unpack_result(answer["result"], output_options(self._ctx, job, job.kind))

    def run_training(self, job: Job, control: JobControl, local: Handler) -> Any:
        """A training job: on an actor with ``ray_training = actors`` (:mod:`.training`), else here."""
        if job.request is None or not on_actors(self._ctx):
            return self.run_local(job, control, local)
        return run_training(self._ctx, self._ray, self.pool, self._shared, job, control, self._count_resume)

    def check_training(self, request: Any) -> None:
        """At submit: refuse a training request actors cannot run (raises TrainingError saying why)."""
        check_request(self._ctx, request, self._shared, self.pool)

    def _count_resume(self) -> None:
        self.resumed += 1

    def _checkpoint_of(self, request: Any) -> str | None:
        """The checkpoint a request runs on: its own, else the studio's loaded one, else the setting's."""
        if getattr(request, "checkpoint", None):
            return str(request.checkpoint)
        active = self._ctx.models.active
        if active is not None:
            return self._ctx.catalog.title(active.info)
        return self._ctx.settings.current.sd_model_checkpoint or None

    def _shipment(self, checkpoint: str | None) -> dict[str, Any] | None:
        """With ``ray_model_transfer = object_store``: the job's checkpoint put into Ray's object store (once per
        SHA-256) for the actor to fetch; None with ``shared_path`` or when the job names no checkpoint."""
        if checkpoint is None or self._ctx.settings.current.ray_model_transfer != "object_store":
            return None
        info = self._ctx.models.resolve(checkpoint)
        if info.is_folder:
            raise TransferError(f"{info.name} is a diffusers folder: ray_model_transfer = object_store sends "
                                "single-file checkpoints only; use shared_path for folders")
        sha = self._ctx.hashes.sha256(info.path)  # cached by path, size and mtime
        return self.shipper.shipment(info.path, info.name, sha).as_dict()

    def _follow(self, slot: ActorSlot, job: Job, control: JobControl, request_json: str,
                shipment: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run ``job`` on ``slot``'s actor: poll its progress, pass stops on; its answer (raises ActorDied)."""
        preview_every = getattr(control, "preview_every", 1)
        pending = slot.handle.run.remote(job.id, job.kind, request_json, preview_every, job.keep_outputs,
                                         self._ctx.settings.current.model_dump_json(), shipment)
        return follow_call(self._ray, slot, job.id, pending, control, _ProgressMirror(control).update,
                           died=ActorDied, pass_skip=True)

    # -- operations ----------------------------------------------------------------------------
    @property
    def owns_ray(self) -> bool:
        """Whether this studio started the Ray it uses (else it joined a running one)."""
        return self._owns_ray

    def state(self) -> list[dict[str, Any]]:
        """Each actor: its device, loaded models, current job and counters (dead ones with why)."""
        rows = []
        for slot in self.pool.slots:
            row: dict[str, Any] = {"name": slot.name, "resources": slot.resources, "alive": slot.alive,
                                   "job": slot.job, "jobs": slot.jobs}
            if slot.alive:
                try:
                    row.update(self._ray.get(slot.handle.state.remote(), timeout=CALL_TIMEOUT))
                    row["job"] = slot.job
                except Exception as exc:  # noqa: BLE001 - a busy or lost actor is shown as such
                    row["error"] = short(exc)
            else:
                row["error"] = slot.died
            rows.append(row)
        return rows

    def close(self) -> None:
        for slot in self.pool.slots:
            try:
                self._ray.kill(slot.handle)
            except Exception:  # noqa: BLE001 - already gone
                pass
        if self._owns_ray:
            self._ray.shutdown()


class _ProgressMirror:
    """An actor's progress copied into the studio's JobControl (so routes, events and previews see it)."""

    def __init__(self, control: JobControl) -> None:
        self._control = control
        self._shape: tuple[int, int] | None = None
        self._preview_id = 0

    def update(self, progress: dict[str, Any]) -> None:
        control = self._control
        shape = (progress["job_count"], progress["total_steps"])
        if shape != self._shape:
            control.begin(*shape, text=progress["text"])
            self._shape = shape
        if progress["job_no"] != control.progress.job_no:
            control.begin_batch(progress["job_no"])
        control.progress.text = progress["text"]
        data = progress.get("preview")
        if data is not None and progress["preview_id"] != self._preview_id:
            self._preview_id = progress["preview_id"]
            control.step(progress["step"], preview_source=lambda data=data: _decode(data))
        elif progress["step"] != control.progress.step:
            control.step(progress["step"])


def _nothing_made(request: Any) -> Any:
    """What a generation interrupted before it started returns: no images, ``interrupted``."""
    from modules.generation.results import GenerationResult

    return GenerationResult(width=request.width, height=request.height, interrupted=True)


def _decode(data: bytes) -> Any:
    from PIL import Image

    image = Image.open(io.BytesIO(data))
    image.load()
    return image


class _Handlers(Mapping[str, Handler]):
    def __init__(self, dispatch: RayDispatch, local: Mapping[str, Handler]) -> None:
        self._dispatch = dispatch
        self._local = local

    def __getitem__(self, name: str) -> Handler:
        return self._dispatch.handler_for(name, self._local[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self._local)

    def __len__(self) -> int:
        return len(self._local)


def start_dispatch(ctx: "AppContext") -> RayDispatch:
    """Start Ray and the actors and widen the device lane to one worker per actor (before the queue starts)."""
    from modules.distributed.ray_workers import start_actors

    started = start_actors(ctx)
    dispatch = RayDispatch(ctx, started)
    ctx.queue.set_lane_width(DEVICE_LANE, len(started.actors))
    return dispatch
