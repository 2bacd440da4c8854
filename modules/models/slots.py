"""Named model slots under one memory budget: what is loaded, how big it is, and what goes first.

Every loaded model of the studio (the checkpoint, the SDXL refiner, ControlNets, and later
classifiers, vision-language models and training copies) sits in a named slot of one
:class:`ModelSlots`. The slots share one budget in bytes, so the job lanes that run side by side
(generation and training) cannot together load more than the device holds: when a new thing would
push the total over the budget, the least recently used *other* slots are evicted first.

Sizes are measured, not guessed: the bytes of the parameters and buffers of every torch module in the
slot (a diffusers pipeline's components, a ``LoadedModel``'s pipeline, plain modules and tensors),
each tensor counted once. Measuring never imports torch: a thing loaded without torch weighs nothing.

Eviction drops the slot's reference; a job that still holds the model keeps using it until it ends
(the memory comes back then). Thread-safe: both lanes' workers load through it.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

log = logging.getLogger(__name__)

MB = 1024 * 1024
#: share of the device's memory the slots may fill when no budget is set (the rest: activations, the OS)
DEFAULT_CPU_SHARE = 0.6
DEFAULT_CUDA_SHARE = 0.85
_MAX_DEPTH = 4


@dataclass(frozen=True)
class SlotInfo:
    """One loaded slot as the memory routes show it."""

    name: str
    bytes: int
    last_used: float   # time.time() of its last use


@dataclass(frozen=True)
class SlotsReport:
    """What is loaded (least recently used first), the bytes in use and the budget."""

    budget: int
    used: int
    slots: tuple[SlotInfo, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"budget": self.budget, "used": self.used,
                "slots": [dataclasses.asdict(slot) for slot in self.slots]}


@dataclass
class _Slot:
    thing: Any
    bytes: int
    used_at: int        # the LRU clock at its last use
    used_wall: float


def device_total_bytes() -> tuple[str, int]:
    """("cuda" | "cpu", total bytes) of the device models load onto. CUDA is asked only when torch is
    already imported (this never imports torch, nor wakes CUDA in a process that has not used it)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_available():
                return "cuda", int(torch.cuda.mem_get_info()[1])
        except Exception:  # noqa: BLE001 - a broken driver or a torch still importing: budget the RAM instead
            pass
    import psutil

    return "cpu", int(psutil.virtual_memory().total)


def default_budget() -> int:
    """The budget when none is set: most of the device's memory (see the shares above)."""
    device, total = device_total_bytes()
    return int(total * (DEFAULT_CUDA_SHARE if device == "cuda" else DEFAULT_CPU_SHARE))


def measure_bytes(thing: Any) -> int:
    """Bytes of the parameters and buffers of the torch modules (and bare tensors) in ``thing``: a module,
    a diffusers pipeline (its ``components``), an object with a ``pipeline`` or ``model`` (``LoadedModel``,
    ``ActiveModel``), or dicts, lists, tuples and dataclasses of those. Shared tensors count once."""
    torch = sys.modules.get("torch")
    if torch is None:
        return 0
    seen_tensors: set[tuple[int, int]] = set()
    seen_objects: set[int] = set()
    total = 0

    def tensors(obj: Any) -> Iterator[Any]:
        if isinstance(obj, torch.nn.Module):
            yield from obj.parameters()
            yield from obj.buffers()
        elif isinstance(obj, torch.Tensor):
            yield obj

    def visit(obj: Any, depth: int) -> None:
        nonlocal total
        if obj is None or depth > _MAX_DEPTH or id(obj) in seen_objects or isinstance(obj, (str, bytes, int, float)):
            return
        seen_objects.add(id(obj))
        if isinstance(obj, (torch.nn.Module, torch.Tensor)):
            for tensor in tensors(obj):
                if tensor.is_meta:
                    continue
                key = (tensor.data_ptr(), tensor.nelement())
                if key not in seen_tensors:
                    seen_tensors.add(key)
                    total += tensor.nelement() * tensor.element_size()
            return
        if isinstance(obj, dict):
            children: Any = obj.values()
        elif isinstance(obj, (list, tuple)):
            children = obj
        elif isinstance(getattr(obj, "components", None), dict):  # a diffusers pipeline
            children = obj.components.values()
        elif dataclasses.is_dataclass(obj):
            children = [getattr(obj, f.name, None) for f in dataclasses.fields(obj)]
        else:
            children = [getattr(obj, name, None) for name in ("pipeline", "model")]
        for child in children:
            visit(child, depth + 1)

    visit(thing, 0)
    return total


class ModelSlots:
    """Loaded things by slot name, under one budget, evicted least recently used first.

    ``budget``: bytes, or a callable read at each check (a setting that can change), or None for
    :func:`default_budget`. ``measure``: how a thing's size is taken when ``put`` is given none.
    """

    def __init__(self, budget: int | Callable[[], int | None] | None = None,
                 measure: Callable[[Any], int] = measure_bytes) -> None:
        self._budget = budget
        self._measure = measure
        self._lock = threading.Lock()
        self._slots: dict[str, _Slot] = {}
        self._clock = 0
        self._default: int | None = None

    # -- the budget ------------------------------------------------------------------------------
    @property
    def budget(self) -> int:
        value = self._budget() if callable(self._budget) else self._budget
        if value is not None and value > 0:
            return int(value)
        if self._default is None:
            self._default = default_budget()
        return self._default

    @property
    def used(self) -> int:
        with self._lock:
            return sum(slot.bytes for slot in self._slots.values())

    # -- reading ---------------------------------------------------------------------------------
    def slot(self, name: str) -> Any | None:
        """The thing in ``name`` (None when empty), marked as just used."""
        with self._lock:
            entry = self._slots.get(name)
            if entry is None:
                return None
            self._touch_locked(entry)
            return entry.thing

    def peek(self, name: str) -> Any | None:
        """The thing in ``name`` without marking it used (for status readers: the API, the UI)."""
        with self._lock:
            entry = self._slots.get(name)
            return entry.thing if entry is not None else None

    def names(self) -> list[str]:
        """Loaded slot names, least recently used first."""
        with self._lock:
            return [name for name, _ in sorted(self._slots.items(), key=lambda kv: kv[1].used_at)]

    def __contains__(self, name: object) -> bool:
        with self._lock:
            return name in self._slots

    def report(self) -> SlotsReport:
        with self._lock:
            ordered = sorted(self._slots.items(), key=lambda kv: kv[1].used_at)
            slots = tuple(SlotInfo(name, entry.bytes, entry.used_wall) for name, entry in ordered)
        return SlotsReport(budget=self.budget, used=sum(s.bytes for s in slots), slots=slots)

    # -- changing --------------------------------------------------------------------------------
    def put(self, name: str, thing: Any, size: int | None = None) -> list[str]:
        """Hold ``thing`` in slot ``name`` (replacing what was there) and evict the least recently used
        other slots while the total is over the budget; returns the names evicted. A thing bigger than
        the whole budget is still held (alone), with a warning: refusing it would fail the job instead."""
        size = self._measure(thing) if size is None else int(size)
        budget = self.budget
        with self._lock:
            replaced = self._slots.pop(name, None)
            evicted = self._evict_locked(budget - size, keep=name)
            self._clock += 1
            self._slots[name] = _Slot(thing, size, self._clock, time.time())
        if size > budget:
            log.warning("model slot %s needs %d MB, more than the whole budget of %d MB", name, size // MB, budget // MB)
        if evicted:
            log.info("evicted model slot(s) %s to make room for %s (%d MB; budget %d MB)", ", ".join(evicted),
                     name, size // MB, budget // MB)
        if evicted or replaced is not None:
            del replaced
            gc.collect()
        return evicted

    def make_room(self, name: str, incoming: int) -> list[str]:
        """Before loading ``incoming`` bytes into ``name``: evict the least recently used other slots until
        they fit beside it (what ``name`` holds now is kept until the new thing replaces it, so a failed
        load leaves it loaded)."""
        budget = self.budget
        with self._lock:
            evicted = self._evict_locked(budget - max(0, incoming), keep=name)
        if evicted:
            log.info("evicted model slot(s) %s before loading %s", ", ".join(evicted), name)
            gc.collect()
        return evicted

    def evict(self, name: str) -> bool:
        """Empty slot ``name``; False when it was empty."""
        with self._lock:
            entry = self._slots.pop(name, None)
        if entry is None:
            return False
        del entry
        gc.collect()
        return True

    def clear(self) -> None:
        with self._lock:
            self._slots.clear()
        gc.collect()

    def touch(self, name: str) -> None:
        with self._lock:
            entry = self._slots.get(name)
            if entry is not None:
                self._touch_locked(entry)

    def _touch_locked(self, entry: _Slot) -> None:
        self._clock += 1
        entry.used_at = self._clock
        entry.used_wall = time.time()

    def _evict_locked(self, room: int, *, keep: str) -> list[str]:
        """Evict least recently used slots other than ``keep`` until the others fit in ``room`` bytes."""
        evicted: list[str] = []
        others = sorted(((n, e) for n, e in self._slots.items() if n != keep), key=lambda kv: kv[1].used_at)
        total = sum(entry.bytes for _, entry in others)
        for slot_name, entry in others:
            if total <= room:
                break
            del self._slots[slot_name]
            total -= entry.bytes
            evicted.append(slot_name)
        return evicted
