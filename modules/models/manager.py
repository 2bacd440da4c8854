"""Holds the loaded checkpoint (and the SDXL refiner) in named model slots and switches them safely.

The models live in :class:`~modules.models.slots.ModelSlots` (slots ``checkpoint`` and ``refiner``; other
modules put ControlNets, classifiers, ... beside them), so every loaded model counts against one memory
budget and the least recently used is evicted when a load would exceed it. Loads come from the queue's
lane workers (the queue is the only way to the device); they are serialised here, so two lanes never
load at once and the budget holds. Readers on other threads see a consistent snapshot. A failed load
raises :class:`ModelLoadError` and leaves the previous model loaded. A checkpoint evicted for room is
loaded again by the next job that needs it.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from modules.models.catalog import CheckpointCatalog, CheckpointInfo
from modules.models.errors import ModelLoadError
from modules.models.hashing import HashCache
from modules.models.slots import ModelSlots

if TYPE_CHECKING:
    from modules.models.loader import LoadedModel, LoadOptions

log = logging.getLogger(__name__)

CHECKPOINT_SLOT = "checkpoint"
REFINER_SLOT = "refiner"


@dataclass(frozen=True)
class ActiveModel:
    """A loaded model with the catalog facts the infotext and API need."""

    info: CheckpointInfo
    model: "LoadedModel"
    sha256: str | None
    load_seconds: float
    tuning: Any = None  # what was done to its denoiser at load (modules.backends.tuning.Tuning), if anything

    @property
    def shorthash(self) -> str | None:
        return self.sha256[:10] if self.sha256 else None


class ModelManager:
    def __init__(self, catalog: CheckpointCatalog, hashes: HashCache,
                 options: Callable[[], "LoadOptions"], slots: ModelSlots | None = None) -> None:
        self._catalog = catalog
        self._hashes = hashes
        self._options = options
        self.slots = slots if slots is not None else ModelSlots()
        self._load_lock = threading.RLock()  # one load at a time, whichever lane asks
        self._last: CheckpointInfo | None = None  # the checkpoint last loaded (reloaded after an eviction)
        #: called with each newly loaded checkpoint (the scripts' ``model_loaded`` callbacks); must not raise
        self.loaded_listeners: list[Callable[[ActiveModel], None]] = []
        #: what to do to a checkpoint's denoiser at load (quantize, compile: modules.backends.tuning.tuning_for);
        #: a loaded checkpoint whose tuning differs from what this gives now is loaded again
        self.tuning: Callable[[CheckpointInfo], Any] | None = None

    @property
    def active(self) -> ActiveModel | None:
        """The loaded checkpoint (None when none is, or it was evicted); reading it is not a use."""
        return self.slots.peek(CHECKPOINT_SLOT)

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
        with self._load_lock:
            active = self.slots.slot(CHECKPOINT_SLOT)
            if active is not None and self._tuning(active.info) != active.tuning:
                self.slots.evict(CHECKPOINT_SLOT)  # quantization or compile changed: loaded again below
                active = None
            if reference is None:
                if active is not None:
                    return active
                if self._last is None:
                    raise ModelLoadError("(none)", "no checkpoint is loaded; put one in models/Stable-diffusion and select it")
                return self.load(self._last)  # evicted for room: load it again
            info = self.resolve(reference)
            if active is not None and active.info.path == info.path:
                return active
            return self.load(info)

    def _load_detached(self, info: CheckpointInfo, slot: str) -> ActiveModel:
        from modules.models.loader import load_model  # heavy imports only when a model loads

        self.slots.make_room(slot, _file_bytes(info))
        started = time.perf_counter()
        model = load_model(info.path, self._options())  # raises ModelLoadError; previous stays
        model.pipeline.set_progress_bar_config(disable=True)  # progress goes to the job, not stderr
        tuning = self._tuning(info)
        if tuning is not None:
            from modules.backends.quantize import QuantizationError

            try:
                tuning.apply(model.pipeline)
            except QuantizationError as exc:
                raise ModelLoadError(info.path, str(exc)) from exc
        sha = None if info.is_folder else self._hashes.sha256(info.path)
        return ActiveModel(info=info, model=model, sha256=sha, load_seconds=time.perf_counter() - started,
                           tuning=tuning)

    def _tuning(self, info: CheckpointInfo) -> Any:
        """The tuning to apply to ``info`` now, None when there is nothing to do."""
        tuning = self.tuning(info) if self.tuning is not None else None
        return tuning if tuning is not None and tuning.active else None

    def ensure_refiner(self, reference: str) -> ActiveModel:
        """A second checkpoint kept loaded alongside the active one (the SDXL refiner); one at a time."""
        info = self.resolve(reference)
        with self._load_lock:
            for name in (REFINER_SLOT, CHECKPOINT_SLOT):
                loaded = self.slots.slot(name)
                if loaded is not None and loaded.info.path == info.path and loaded.tuning == self._tuning(info):
                    return loaded
            self.slots.evict(REFINER_SLOT)
            refiner = self._load_detached(info, REFINER_SLOT)
            self.slots.put(REFINER_SLOT, refiner)
        log.info("Loaded refiner %s (%s) in %.1f s", info.name, refiner.model.family.label, refiner.load_seconds)
        return refiner

    def load(self, info: CheckpointInfo) -> ActiveModel:
        with self._load_lock:
            active = self._load_detached(info, CHECKPOINT_SLOT)
            self.slots.put(CHECKPOINT_SLOT, active)  # the previous checkpoint is let go (and collected) here
            self._last = info
        log.info("Loaded %s (%s) in %.1f s", info.name, active.model.family.label, active.load_seconds)
        for listener in list(self.loaded_listeners):
            listener(active)
        return active

    def unload(self) -> None:
        with self._load_lock:
            self.slots.evict(CHECKPOINT_SLOT)
            self.slots.evict(REFINER_SLOT)
            self._last = None
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


def _file_bytes(info: CheckpointInfo) -> int:
    """What a checkpoint will roughly take once loaded: its weight files' size (made room for before loading)."""
    try:
        if not info.is_folder:
            return info.path.stat().st_size
        return sum(p.stat().st_size for p in info.path.rglob("*") if p.suffix in (".safetensors", ".bin") and p.is_file())
    except OSError:
        return 0
