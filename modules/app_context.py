"""The app context: the one explicit holder of a running studio's state.

Everything that lives as long as the process (flags, paths, settings, the model catalog, the
loaded model, the job queue) hangs off one :class:`AppContext`, created in ``launch.py`` (or a
test) and passed explicitly to the API, the UI and the job handlers. There is no other
process-wide mutable state in Atelier.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from modules.understanding.interrogate import CLASSIFIER_NAME, Interrogator
from modules.understanding.search.auto_index import start_auto_index
from modules.understanding.services import UnderstandingServices
from modules.flags import Flags
from modules.generation.addons.registry import JobAddons
from modules.generation.prompts.styles import StyleError, StyleStore
from modules.images.upscalers import UpscalerSet
from modules.jobs.disk_space import SpaceGuard
from modules.jobs.events import EventBus
from modules.jobs.kinds import JobKindRegistry
from modules.jobs.limits import QueueLimits
from modules.jobs.queue import JobQueue
from modules.jobs.store import JobStore, open_job_store
from modules.models.catalog import CheckpointCatalog
from modules.models.hashing import HashCache
from modules.models.hash_worker import HashWorker, library_targets
from modules.models.library import ModelLibrary
from modules.models.manager import ModelManager
from modules.models.slots import MB, ModelSlots
from modules.paths import Paths, resolve_paths
from modules.backends.scope import BackendCache
from modules.scripts.host import ScriptHost
from modules.settings import SettingsStore

log = logging.getLogger(__name__)


@dataclass
class AppContext:
    flags: Flags
    paths: Paths
    settings: SettingsStore
    hashes: HashCache
    catalog: CheckpointCatalog
    models: ModelManager
    kinds: JobKindRegistry
    queue: JobQueue
    store: JobStore
    events: EventBus
    interrogator: Interrogator
    upscalers: UpscalerSet = field(default_factory=UpscalerSet)
    addons: JobAddons | None = None  # LoRA/embeddings/VAE/ControlNet caches and each job's hooks
    styles: StyleStore | None = None
    scripts: ScriptHost | None = None  # scripts, extensions and their callbacks (modules/scripts)
    backends: BackendCache | None = None  # exported UNets and their runtimes (modules/backends)
    understanding: UnderstandingServices | None = None  # backends, OCR, answer streams (modules/understanding)
    library: ModelLibrary | None = None  # every kind of model file: list, inspect, rename, delete (models/library)
    hashing: HashWorker | None = None  # background hashing of the model files (models/hash_worker)
    cluster: Any = None  # with --ray: the Ray actors running the device lane (modules/distributed/dispatch.py)
    started_at: float = field(default_factory=time.time)

    def close(self) -> None:
        """A clean stop: the worker stops at the running job's next step (recorded as interrupted, or
        queued again when resumable), then the job file's write-ahead log is folded in and it is closed."""
        if self.hashing is not None:
            self.hashing.stop()  # the background hashing ends after the file it reads
        try:
            self.queue.shutdown()
            if self.cluster is not None:
                self.cluster.close()  # after the queue: the running jobs were interrupted through it
        finally:
            try:
                self.store.checkpoint()
            except Exception as exc:  # noqa: BLE001 - a full disk must not keep the file from closing
                log.warning("could not checkpoint the job database %s: %s", self.store.path, exc)
            self.store.close()


def queue_limits(flags: Flags) -> QueueLimits:
    return QueueLimits(max_waiting=flags.max_queue, max_waiting_per_owner=flags.max_queue_per_user,
                       max_pixels=flags.max_pixels, max_images=flags.max_images)


def space_guard(flags: Flags, paths: Paths, settings: SettingsStore) -> SpaceGuard:
    """The free-space margin the queue keeps where jobs write: ``--min-free-space-mb`` when given,
    else the ``min_free_space_mb`` setting (read at each check, so a change applies at once)."""

    def margin() -> int:
        return flags.min_free_space_mb if flags.min_free_space_mb is not None else settings.current.min_free_space_mb

    return SpaceGuard(data_dir=paths.data_dir, folders=(paths.outputs_dir, paths.jobs_db.parent), min_free_mb=margin)


def upscaler_dirs(paths: Paths) -> list[Path]:
    """Folders searched for ESRGAN-family upscaler models (A1111's names), data dir first."""
    dirs = [paths.data_dir / "models" / "ESRGAN", paths.data_dir / "models" / "RealESRGAN",
            paths.repo_root / "models" / "ESRGAN"]
    return list(dict.fromkeys(dirs))


def open_styles(path: Path) -> StyleStore | None:
    """The prompt styles of ``<data dir>/styles.csv`` (None, logged, when the file is unreadable)."""
    try:
        return StyleStore([path])
    except (StyleError, OSError, UnicodeDecodeError) as exc:
        log.error("prompt styles unavailable: %s", exc)
        return None


def create_app_context(flags: Flags) -> AppContext:
    """Wire up a studio from its flags (no model is loaded here; no hashing, no network)."""
    from modules.job_kinds import builtin_kinds
    from functools import partial

    from modules.backends.tuning import tuning_for
    from modules.models.devices import device_choice
    from modules.models.loader_options import load_options_for

    paths = resolve_paths(flags.data_dir, flags.ckpt_dir, flags.lora_dir)
    paths.ensure()
    settings = SettingsStore(paths.settings_file)
    hashes = HashCache(paths.hash_cache_file)
    catalog = CheckpointCatalog(paths.ckpt_dirs, hashes)
    # one memory budget for every loaded model, whichever lane loads it (--model-memory-mb, else the device's)
    slots = ModelSlots(flags.model_memory_mb * MB if flags.model_memory_mb else None)
    models = ModelManager(catalog, hashes, lambda: load_options_for(flags, settings, paths), slots=slots)
    kinds = JobKindRegistry(builtin_kinds())
    store = open_job_store(paths.jobs_db)
    events = EventBus()
    queue = JobQueue({}, limits=queue_limits(flags), store=store, events=events,
                     request_types=kinds.request_types(), describe=kinds.describe, keep_finished=64,
                     lanes=kinds.lane_of,
                     space=space_guard(flags, paths, settings))
    interrogator = Interrogator([paths.data_dir / "models" / "classifier" / CLASSIFIER_NAME,
                                 paths.repo_root / "models" / "classifier" / CLASSIFIER_NAME], slots=slots)
    ctx = AppContext(flags=flags, paths=paths, settings=settings, hashes=hashes, catalog=catalog,
                     models=models, kinds=kinds, queue=queue, store=store, events=events, interrogator=interrogator,
                     # CPU until UpscalerSet can pick its device lazily (no torch import at start-up)
                     upscalers=UpscalerSet(upscaler_dirs(paths), device="cpu"),
                     styles=open_styles(paths.data_dir / "styles.csv"),
                     addons=JobAddons(paths, hashes, allow_pickle=flags.allow_pickle, slots=slots),
                     backends=BackendCache(paths.cache_dir),
                     scripts=ScriptHost(paths.repo_root, paths.data_dir, enable=flags.enable_extensions,
                                        add_kind=kinds.register, user_code=not flags.disable_extensions),
                     understanding=UnderstandingServices(data_dir=paths.data_dir, repo_root=paths.repo_root,
                                                         settings=lambda: settings.current, slots=slots,
                                                         device=lambda: device_choice(flags)[0]))
    ctx.library = ModelLibrary(paths, catalog, hashes, loaded=lambda: models.active.info.path if models.active else None)
    ctx.hashing = HashWorker(hashes, library_targets(ctx.library), shown=paths.shown)  # started after the port opens
    models.loaded_listeners.append(ctx.scripts.model_loaded)
    models.tuning = partial(tuning_for, ctx)  # quantization and compile at load (PyTorch backend)
    ctx.scripts.start()  # the built-in scripts and the approved extensions; no unapproved code runs
    handlers = kinds.handlers(ctx)
    if flags.ray:  # only then is Ray imported
        from modules.distributed.dispatch import start_dispatch

        try:
            ctx.cluster = start_dispatch(ctx)
        except BaseException:
            store.close()
            raise
        handlers = ctx.cluster.handlers(handlers)
    queue.attach_handlers(handlers)  # the handlers need the context, which holds the queue
    queue.restore(offers_resume=kinds.offers_resume)  # a kind may offer to resume its interrupted jobs
    queue.start()
    start_auto_index(ctx)  # new images join the gallery's search index once it was built
    return ctx
