"""Holds the loaded checkpoint and switches it safely.

Loads are called from the queue's worker thread only (the queue is the only way to the
device); readers on other threads see a consistent ``current`` snapshot. A failed load
raises :class:`ModelLoadError` and leaves the previous model loaded.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from modules.models.catalog import CheckpointCatalog, CheckpointInfo
from modules.models.errors import ModelLoadError
from modules.models.hashing import HashCache

if TYPE_CHECKING:
    from modules.models.loader import LoadedModel, LoadOptions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ActiveModel:
    """A loaded model with the catalog facts the infotext and API need."""

    info: CheckpointInfo
    model: "LoadedModel"
    sha256: str | None
    load_seconds: float

    @property
    def shorthash(self) -> str | None:
        return self.sha256[:10] if self.sha256 else None


class ModelManager:
    def __init__(self, catalog: CheckpointCatalog, hashes: HashCache,
                 options: Callable[[], "LoadOptions"]) -> None:
        self._catalog = catalog
        self._hashes = hashes
        self._options = options
        self._lock = threading.Lock()
        self._active: ActiveModel | None = None
        self._refiner: ActiveModel | None = None  # a second model kept alongside (SDXL refiner)

    @property
    def active(self) -> ActiveModel | None:
        with self._lock:
            return self._active

    def resolve(self, reference: str) -> CheckpointInfo:
        info = self._catalog.find(reference)
        if info is None:
            self._catalog.refresh()
            info = self._catalog.find(reference)
        if info is None:
            hint = self._catalog.closest_names(reference)
            extra = f"; did you mean {', '.join(hint)}?" if hint else ""
            raise ModelLoadError(reference, f"no such checkpoint in the checkpoint folders{extra}")
        return info

    def ensure_loaded(self, reference: str | None) -> ActiveModel:
        """Return the active model, loading ``reference`` first if it names another one."""
        active = self.active
        if reference is None:
            if active is None:
                raise ModelLoadError("(none)", "no checkpoint is loaded; put one in models/Stable-diffusion and select it")
            return active
        info = self.resolve(reference)
        if active is not None and active.info.path == info.path:
            return active
        return self.load(info)

    def _load_detached(self, info: CheckpointInfo) -> ActiveModel:
        from modules.models.loader import load_model  # heavy imports only when a model loads

        started = time.perf_counter()
        model = load_model(info.path, self._options())  # raises ModelLoadError; previous stays
        model.pipeline.set_progress_bar_config(disable=True)  # progress goes to the job, not stderr
        sha = None if info.is_folder else self._hashes.sha256(info.path)
        return ActiveModel(info=info, model=model, sha256=sha, load_seconds=time.perf_counter() - started)

    def ensure_refiner(self, reference: str) -> ActiveModel:
        """A second checkpoint kept loaded alongside the active one (the SDXL refiner); one at a time."""
        info = self.resolve(reference)
        with self._lock:
            current, active = self._refiner, self._active
        for loaded in (current, active):
            if loaded is not None and loaded.info.path == info.path:
                return loaded
        with self._lock:
            self._refiner = None
        gc.collect()
        refiner = self._load_detached(info)
        with self._lock:
            self._refiner = refiner
        log.info("Loaded refiner %s (%s) in %.1f s", info.name, refiner.model.family.label, refiner.load_seconds)
        return refiner

    def load(self, info: CheckpointInfo) -> ActiveModel:
        active = self._load_detached(info)
        with self._lock:
            previous, self._active = self._active, active
        del previous
        gc.collect()
        log.info("Loaded %s (%s) in %.1f s", info.name, active.model.family.label, active.load_seconds)
        return active

    def unload(self) -> None:
        with self._lock:
            self._active = None
            self._refiner = None
        gc.collect()

    def default_checkpoint(self, preferred: str | Path | None) -> CheckpointInfo | None:
        """What to load at start: the user's choice, else the first checkpoint found."""
        if preferred:
            found = self._catalog.find(str(preferred))
            if found is None and Path(preferred).exists():
                path = Path(preferred).resolve()
                found = next((i for i in self._catalog.list() if i.path == path), None)
                if found is None:
                    found = CheckpointInfo(path, path.name, path.is_dir())
            if found is not None:
                return found
        items = self._catalog.list()
        return items[0] if items else None
