"""What one Ray actor is: a minimal studio of its own (model manager, add-ons, runners) on the same
data dir path, that runs the generations (and, with ``ray_training = actors``, the training jobs: :mod:`.training`)
the studio sends it and answers how far they are.

A plain class (:mod:`.ray_workers` makes it an actor), so it holds no Ray import. It builds no queue and
no job store: the studio's SQLite queue stays the only one, and the actor never writes images (it sends
them back: :mod:`.wire`). Cancel, interrupt and skip reach it by job id, so they stop only that job.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Sequence

#: the job kinds an actor runs (the device lane's other kinds run on the studio's host)
REMOTE_KINDS = ("txt2img", "img2img")


class SentSettings:
    """The studio's settings as the last job sent them (an actor does not read the settings file again, so a
    change in the studio applies to its next job); read through ``.current`` as a SettingsStore is."""

    def __init__(self, initial: Any) -> None:
        self._lock = threading.Lock()
        self._settings = initial

    @property
    def current(self) -> Any:
        with self._lock:
            return self._settings.model_copy()

    def replace(self, settings_json: str) -> None:
        from modules.settings import Settings

        settings = Settings.model_validate_json(settings_json)
        with self._lock:
            self._settings = settings


@dataclass
class WorkerContext:
    """What :func:`~modules.generation.job_kinds.generate_once` reads of a studio (an AppContext's fields of
    the same names), built by an actor for itself."""

    flags: Any
    paths: Any
    settings: Any
    hashes: Any
    catalog: Any
    models: Any
    upscalers: Any
    styles: Any
    addons: Any
    backends: Any


def build_worker_context(argv: Sequence[str], model_cache: Any = None) -> WorkerContext:
    """The pieces of a studio a generation needs, from the studio's own flags: no queue, store or scripts;
    ``model_cache``, a folder of checkpoints fetched through the object store, is listed with the checkpoint
    folders."""
    from modules.backends.scope import BackendCache
    from modules.flags import parse_flags
    from modules.generation.addons.registry import JobAddons
    from modules.generation.prompts.styles import StyleError, StyleStore
    from modules.images.upscalers import UpscalerSet
    from modules.models.catalog import CheckpointCatalog
    from modules.models.hashing import HashCache
    from modules.models.loader_options import load_options_for
    from modules.models.manager import ModelManager
    from modules.models.slots import MB, ModelSlots
    from modules.paths import resolve_paths
    from modules.settings import SettingsStore

    flags = parse_flags(list(argv))
    paths = resolve_paths(flags.data_dir, flags.ckpt_dir, flags.lora_dir)
    settings = SentSettings(SettingsStore(paths.settings_file).current)
    hashes = HashCache(paths.hash_cache_file)
    catalog = CheckpointCatalog([*paths.ckpt_dirs, *([model_cache] if model_cache is not None else [])], hashes)
    slots = ModelSlots(flags.model_memory_mb * MB if flags.model_memory_mb else None)
    models = ModelManager(catalog, hashes, lambda: load_options_for(flags, settings, paths), slots=slots)
    try:
        styles = StyleStore([paths.data_dir / "styles.csv"])
    except (StyleError, OSError, UnicodeDecodeError):
        styles = None  # as the studio: generations run without styles
    upscaler_dirs = list(dict.fromkeys([paths.data_dir / "models" / "ESRGAN", paths.data_dir / "models" / "RealESRGAN",
                                        paths.repo_root / "models" / "ESRGAN"]))  # the studio's folders
    ctx = WorkerContext(flags=flags, paths=paths, settings=settings, hashes=hashes, catalog=catalog, models=models,
                        upscalers=UpscalerSet(upscaler_dirs, device="cpu"), styles=styles,
                        addons=JobAddons(paths, hashes, allow_pickle=flags.allow_pickle, slots=slots),
                        backends=BackendCache(paths.cache_dir))
    from functools import partial

    from modules.backends.tuning import tuning_for

    models.tuning = partial(tuning_for, ctx)  # quantization and compile at load, as in the studio
    return ctx


class StudioWorker:
    """One actor's studio: runs one generation at a time and answers progress, state and stops meanwhile."""

    def __init__(self, name: str, argv: Sequence[str], threads: int | None = None) -> None:
        from modules.distributed.model_transfer import cache_dir

        if threads:
            import torch

            torch.set_num_threads(threads)
        self.name = name
        self._model_cache = cache_dir().resolve()
        self._ctx = build_worker_context(argv, self._model_cache)
        self._fetches = 0  # checkpoints fetched through the object store into the local cache
        self._lock = threading.Lock()
        self._job_id: str | None = None
        self._control: Any = None
        self._loads = 0
        self._jobs = 0
        self._early: dict[str, set[str]] = {}  # stops that arrived before their job did (applied when it starts)
        self._ctx.models.loaded_listeners.append(self._loaded)

    def _loaded(self, active: Any) -> None:
        with self._lock:
            self._loads += 1

    def run(self, job_id: str, kind: str, request_json: str, preview_every: int = 1,
            keep_outputs: bool = False, settings_json: str | None = None,
            shipment: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run one generation with the studio's settings (``settings_json``); ``{"result": packed}``, or
        ``{"error": message}`` for a request that cannot run. ``shipment``: the checkpoint sent through the
        object store (:mod:`.model_transfer`), fetched into this node's cache unless it is there already."""
        from modules.distributed.wire import pack_result
        from modules.generation.job_kinds import GENERATION_ERRORS, generate_once, output_options
        from modules.distributed.model_transfer import TransferError
        from modules.generation.requests import Img2ImgRequest, Txt2ImgRequest
        from modules.jobs.model import Job
        from modules.jobs.progress import JobControl

        if kind == "txt2img":
            from modules.generation.runners.txt2img import run_txt2img as runner
            request: Any = Txt2ImgRequest.model_validate_json(request_json)
        elif kind == "img2img":
            from modules.generation.runners.img2img import run_img2img as runner
            request = Img2ImgRequest.model_validate_json(request_json)
        else:
            return {"error": f"a Ray actor does not run {kind!r} jobs"}
        job = Job(id=job_id, kind=kind, request=request, keep_outputs=keep_outputs)
        control = JobControl()
        control.preview_every = preview_every  # type: ignore[attr-defined] - read by the sampler, as submit sets it
        busy = self._claim(job_id, control)
        if busy:
            return {"error": busy}
        try:
            if settings_json is not None:
                self._ctx.settings.replace(settings_json)
            if shipment is not None:
                control.progress.text = f"getting {shipment['name']} (Ray object store)"
                request = job.request = request.model_copy(update={"checkpoint": str(self._fetch(shipment))})
            output = replace(output_options(self._ctx, job, kind), save=False)  # the studio saves the images
            result = generate_once(self._ctx, request, control, output, runner)
            return {"result": pack_result(result)}
        except (*GENERATION_ERRORS, TransferError) as exc:
            return {"error": str(exc)}
        finally:
            self._release()

    def train(self, job_id: str, kind: str, request_json: str, settings_json: str) -> dict[str, Any]:
        """Run (or resume) a training job against its session folder in the shared data dir, with the studio's
        settings; ``{"result": the kind's result}``, or ``{"error": message}`` (:mod:`.training`)."""
        from modules.distributed.training import TRAINING_KINDS, kind_of
        from modules.jobs.model import Job
        from modules.jobs.progress import JobControl

        if kind not in TRAINING_KINDS:
            return {"error": f"a Ray actor does not run {kind!r} jobs"}
        spec = kind_of(kind)
        job = Job(id=job_id, kind=kind, request=spec.request.model_validate_json(request_json))
        control = JobControl()
        busy = self._claim(job_id, control)
        if busy:
            return {"error": busy}
        try:
            self._ctx.settings.replace(settings_json)
            return {"result": spec.run(self._ctx, job, control)}
        except spec.user_errors as exc:
            return {"error": str(exc)}
        finally:
            self._release()

    def _claim(self, job_id: str, control: Any) -> str | None:
        """Take ``job_id`` (with the stops that reached this actor before it): None, or why this actor is busy."""
        with self._lock:
            if self._job_id is not None:
                return f"actor {self.name} is busy with job {self._job_id}"
            self._job_id, self._control = job_id, control
            for how in self._early.pop(job_id, ()):
                _event(control, how).set()
        return None

    def _release(self) -> None:
        with self._lock:
            self._job_id, self._control = None, None
            self._jobs += 1

    def sees(self, path: str, token: str) -> bool:
        """Whether ``path`` holds ``token`` on this actor's node (the studio's shared data dir check)."""
        try:
            with open(path, encoding="utf-8") as handle:
                return handle.read().strip() == token
        except (OSError, UnicodeDecodeError):
            return False

    def _fetch(self, shipment: dict[str, Any]) -> Any:
        """The shipped checkpoint's path in this node's cache, fetched from the object store when missing."""
        import ray  # an actor runs under Ray; the module itself stays free of it

        from modules.distributed.model_transfer import ensure_local

        path, fetched = ensure_local(self._model_cache, shipment, get=ray.get, hash_of=self._ctx.hashes.sha256)
        if fetched:
            with self._lock:
                self._fetches += 1
            self._ctx.catalog.refresh()
        return path

    def progress(self, job_id: str) -> dict[str, Any] | None:
        """How far job ``job_id`` is (with its latest preview), or None when this actor is not running it."""
        from modules.distributed.wire import progress_of

        with self._lock:
            control = self._control if self._job_id == job_id else None
        return progress_of(control) if control is not None else None

    def stop(self, job_id: str, how: str) -> bool:
        """``how``: cancel, interrupt or skip; only when this actor is running ``job_id``."""
        with self._lock:
            control = self._control if self._job_id == job_id else None
            if control is None:  # its run call may not have begun yet: kept for it
                self._early.setdefault(job_id, set()).add(how)
                while len(self._early) > 64:  # stops for jobs that had already ended here: forgotten
                    self._early.pop(next(iter(self._early)))
                return False
        _event(control, how).set()
        return True

    def state(self) -> dict[str, Any]:
        """The actor's device, loaded models, current job and counters (for /api/v1/cluster and the UI)."""
        from modules.models.devices import device_choice

        ctx = self._ctx
        active = ctx.models.active
        with self._lock:
            job_id, loads, jobs, fetches = self._job_id, self._loads, self._jobs, self._fetches
        device = device_choice(ctx.flags)[0]
        if device.startswith("cuda"):
            import torch

            device = f"{device} ({torch.cuda.get_device_name(0)})"
        return {"name": self.name, "node": socket.gethostname(), "pid": os.getpid(), "device": device,
                "checkpoint": active.info.name if active is not None else None,
                "checkpoint_cached": active is not None and active.info.path.is_relative_to(self._model_cache),
                "loaded": ctx.models.slots.names(), "job": job_id, "loads": loads, "jobs": jobs, "fetches": fetches,
                "at": time.time()}


def _event(control: Any, how: str) -> Any:
    return {"cancel": control.cancel_event, "interrupt": control.interrupt_event, "skip": control.skip_event}[how]
