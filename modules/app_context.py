"""The app context: the one explicit holder of a running studio's state.

Everything that lives as long as the process (flags, paths, settings, the model catalog, the
loaded model, the job queue) hangs off one :class:`AppContext`, created in ``launch.py`` (or a
test) and passed explicitly to the API, the UI and the job handlers. There is no other
process-wide mutable state in Atelier.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from modules.flags import Flags
from modules.jobs.queue import JobQueue
from modules.models.catalog import CheckpointCatalog
from modules.models.hashing import HashCache
from modules.models.manager import ModelManager
from modules.paths import Paths, resolve_paths
from modules.settings import SettingsStore


@dataclass
class AppContext:
    flags: Flags
    paths: Paths
    settings: SettingsStore
    hashes: HashCache
    catalog: CheckpointCatalog
    models: ModelManager
    queue: JobQueue
    started_at: float = field(default_factory=time.time)

    def close(self) -> None:
        self.queue.shutdown()


def device_choice(flags: Flags) -> tuple[str, str]:
    """(device, dtype) from the flags: CUDA with float16 when present, else CPU float32."""
    if flags.use_cpu:
        return "cpu", "float32"
    import torch  # imported lazily: not on the startup path unless a model loads

    if torch.cuda.is_available():
        return "cuda", "float32" if flags.no_half else "float16"
    return "cpu", "float32"


def create_app_context(flags: Flags) -> AppContext:
    """Wire up a studio from its flags (no model is loaded here; no hashing, no network)."""
    from modules.jobs.handlers import build_handlers
    from modules.models.loader_options import load_options_for

    paths = resolve_paths(flags.data_dir, flags.ckpt_dir, flags.lora_dir)
    paths.ensure()
    settings = SettingsStore(paths.settings_file)
    hashes = HashCache(paths.hash_cache_file)
    catalog = CheckpointCatalog(paths.ckpt_dirs, hashes)
    holder: dict[str, AppContext] = {}
    models = ModelManager(catalog, hashes, lambda: load_options_for(holder["ctx"]))
    queue = JobQueue(build_handlers(lambda: holder["ctx"]))
    ctx = AppContext(flags=flags, paths=paths, settings=settings, hashes=hashes, catalog=catalog,
                     models=models, queue=queue)
    holder["ctx"] = ctx
    queue.start()
    return ctx
