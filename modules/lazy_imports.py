"""Heavy libraries are imported by one thread at a time, and nobody sees one half-imported.

Why: the studio opens its port before any model library is imported (start-up stays light), then the job
worker loads the default model and imports torch, diffusers and transformers while request threads already
answer. Two failures followed from that, each first fixed where it showed:

* a route peeking at ``sys.modules["torch"]`` while the worker was still executing ``torch/__init__`` got a
  half-initialised module (500: "partially initialized module 'torch' has no attribute 'cuda'");
* two threads importing parts of diffusers at once ran into CPython's cross-thread import-deadlock avoidance,
  and the model load failed ("deadlock detected by _ModuleLock", "cannot import name ... from 'diffusers'").

The mechanism, installed once at start by ``launch.py`` (:func:`install_import_hook`), covers every thread and
every route without per-route code:

* :class:`SerialisingFinder`, first on ``sys.meta_path``, gives each module of the packages in
  :data:`HEAVY_PACKAGES` a loader whose ``create_module``/``exec_module`` run under :data:`IMPORT_LOCK`, one
  process-wide re-entrant lock: while one thread executes heavy modules, another thread's first import of a
  heavy module waits before executing anything. The loader is a subclass of the original one (same methods,
  ``isinstance`` checks still hold), not a wrapper around it.
* Code that looks a heavy module up without importing it (the memory figures must not import torch just to
  answer) calls :func:`loaded_module`, never ``sys.modules`` directly: it returns the module once it has
  finished executing (waiting while another thread executes it) and None when it was never imported. The
  finder records which heavy modules are executing, and by which thread; no library module is touched.

Why it cannot deadlock: CPython takes a module's own lock *before* a finder or loader is asked, so a thread
may hold the lock of the module it is about to execute while it waits for :data:`IMPORT_LOCK`. If the lock's
holder then needs that very module, it waits on that thread through CPython's module locks. Every wait here
is therefore a short poll that looks at CPython's record of which thread waits on which module lock
(``importlib._bootstrap._blocking_on``, read only): when the holder waits, directly or through other
threads, on a lock the waiting thread holds, the waiting thread goes ahead without the lock, on behalf of
the holder (which is blocked anyway, so still only one of them executes heavy modules). The holder's import
then completes. In a genuine cross-thread import cycle (the module the waiting thread started itself imports
one of the holder's half-executed modules) that thread meets the half-executed module as a one-thread
circular import would: an ``import`` statement gets the partial module; ``importlib.import_module`` may get
CPython's ``deadlock detected`` error instead. Only a hook that runs before CPython takes the module lock
(replacing ``builtins.__import__``, which ``importlib.import_module`` bypasses anyway) could order that case
too. Where CPython's record cannot be read (another Python), a wait gives up after :data:`GIVE_UP_S` seconds
with a warning, which is the behaviour without the hook.

The older explicit API stays: :data:`DIFFUSERS_IMPORT_LOCK` is :data:`IMPORT_LOCK` (model loading holds it for
the whole load, see ``modules.models.loader.load_model``), and :func:`diffusers_attr` imports a diffusers
attribute under it. Taking the lock *before* an import starts (as those two do) is the fully ordered case.

Installing the hook imports nothing heavy: it only inserts the finder.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import logging
import sys
import threading
import time
from contextlib import contextmanager
from types import ModuleType, TracebackType
from typing import Any, Iterable, Iterator, Sequence

log = logging.getLogger(__name__)

#: Top-level packages whose import is serialised: the model stack that the job worker imports while request
#: threads run, and the libraries that import torch themselves (so they meet it half-imported). Light
#: libraries imported before the port opens (numpy, PIL, gradio, fastapi, huggingface_hub) are not listed:
#: serialising them gains nothing. Names not installed cost nothing.
HEAVY_PACKAGES: frozenset[str] = frozenset({
    "torch", "torchvision", "torchaudio", "torchsde", "torchdiffeq", "torchgen", "functorch",
    "diffusers", "transformers", "tokenizers", "accelerate", "peft", "safetensors",
    "controlnet_aux", "spandrel", "cv2", "open_clip", "timm", "onnxruntime", "scipy", "skimage",
    "k_diffusion", "xformers", "bitsandbytes", "compel",
})

POLL_S = 0.05       # how often a waiting thread checks whether the lock's holder waits on it
GIVE_UP_S = 300.0   # a wait that cannot be resolved from CPython's lock records ends after this, with a warning


def _module_locks_awaited_by(thread_id: int) -> Sequence[Any]:
    """The CPython module locks ``thread_id`` waits to acquire (empty when none or when unknowable).

    ``importlib._bootstrap._blocking_on`` maps a thread id to the ``_ModuleLock`` it waits on (3.11) or to a
    list of them (3.12+); each lock has ``owner``, a thread id. Read only, and any surprise means "unknown".
    """
    bootstrap = sys.modules.get("importlib._bootstrap")
    try:
        entry = bootstrap._blocking_on.get(thread_id)  # type: ignore[union-attr]
    except Exception:  # noqa: BLE001 - another Python: no record to read
        return ()
    if entry is None:
        return ()
    return tuple(entry) if isinstance(entry, list) else (entry,)


class ImportLock:
    """A re-entrant lock that knows its owner and never waits on a thread that waits on the waiter.

    ``with IMPORT_LOCK:`` takes it (or goes ahead without it when its holder is blocked on this thread, see
    the module docstring); the same thread may take it again. Besides the lock it keeps which heavy modules
    are executing and by which thread (for :func:`loaded_module`), and which thread each waiting thread waits
    for (so that chains through this lock's waits are seen as well as chains through CPython's module locks).
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._owner: int | None = None
        self._count = 0
        self._local = threading.local()
        self._waits_for: dict[int, int] = {}  # thread id -> the thread it polls for (one entry per waiting thread)
        self._executing: dict[str, tuple[threading.Event, int]] = {}  # heavy module -> (done, executing thread)

    @property
    def owner(self) -> int | None:
        """The thread id holding the lock, or None."""
        return self._owner

    def acquire(self) -> bool:
        """Take the lock; False when it was not taken because waiting would deadlock (or lasted too long)."""
        if self._lock.acquire(blocking=False):
            self._taken()
            return True
        me = threading.get_ident()
        started = time.monotonic()
        try:
            while not self._lock.acquire(timeout=POLL_S):
                owner = self._owner
                if owner is None:
                    continue
                self._waits_for[me] = owner
                if self._waits_on(owner, me):
                    log.debug("import lock: thread %s goes ahead for its holder %s, which waits on it", me, owner)
                    return False
                if time.monotonic() - started > GIVE_UP_S:
                    log.warning("import lock: waited %.0f s for thread %s; importing without the lock", GIVE_UP_S,
                                owner)
                    return False
        finally:
            self._waits_for.pop(me, None)
        self._taken()
        return True

    def release(self) -> None:
        self._count -= 1
        if self._count == 0:
            self._owner = None
        self._lock.release()

    def __enter__(self) -> "ImportLock":
        self._held_stack().append(self.acquire())
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if self._held_stack().pop():
            self.release()

    @contextmanager
    def executing(self, module: ModuleType | None) -> Iterator[None]:
        """Run a heavy module's creation or execution under the lock, recorded as executing (by this thread)
        until it has finished, for :func:`loaded_module`."""
        with self:
            self._local.depth = self.depth() + 1
            name = module.__name__ if module is not None else None
            done = self.mark_executing(name) if name is not None else threading.Event()
            try:
                yield
            finally:
                if name is not None and self._executing.get(name, (None,))[0] is done:
                    del self._executing[name]
                done.set()
                self._local.depth -= 1

    def mark_executing(self, name: str) -> threading.Event:
        """Record that this thread is bringing module ``name`` into being (from its creation on, before CPython
        puts it in ``sys.modules``); its event is set when the module has executed."""
        entry = self._executing.get(name)
        if entry is not None and entry[1] == threading.get_ident():
            return entry[0]
        done = threading.Event()
        self._executing[name] = (done, threading.get_ident())
        return done

    def forget(self, name: str, done: threading.Event) -> None:
        """A module whose creation failed is not executing any more."""
        if self._executing.get(name, (None,))[0] is done:
            del self._executing[name]
        done.set()

    def finished(self, name: str) -> bool:
        """Whether module ``name`` is not executing in another thread (waiting while it is; False when that
        wait would deadlock or lasted too long)."""
        entry = self._executing.get(name)
        if entry is None or entry[1] == threading.get_ident():
            return True
        return self.wait_for(entry[0], entry[1])

    def depth(self) -> int:
        """How many heavy modules this thread is executing (nested), 0 outside any."""
        return getattr(self._local, "depth", 0)

    def wait_for(self, done: threading.Event, executor: int) -> bool:
        """Wait until ``done`` is set by thread ``executor``; False when that would deadlock (or took too long)."""
        me = threading.get_ident()
        started = time.monotonic()
        self._waits_for[me] = executor
        try:
            while not done.wait(POLL_S):
                if self._waits_on(executor, me) or time.monotonic() - started > GIVE_UP_S:
                    return False
            return True
        finally:
            self._waits_for.pop(me, None)

    def _taken(self) -> None:
        self._owner = threading.get_ident()
        self._count += 1

    def _held_stack(self) -> list[bool]:
        stack = getattr(self._local, "held", None)
        if stack is None:
            stack = self._local.held = []
        return stack

    def _waits_on(self, thread_id: int, me: int) -> bool:
        """Whether ``thread_id`` waits, directly or through other threads, on a lock held by ``me``."""
        seen: set[int] = set()
        todo = [thread_id]
        while todo:
            current = todo.pop()
            if current in seen:
                continue
            seen.add(current)
            owners = [getattr(lock, "owner", None) for lock in _module_locks_awaited_by(current)]
            owners.append(self._waits_for.get(current))
            for owner in owners:
                if owner == me:
                    return True
                if owner is not None:
                    todo.append(owner)
        return False


#: The one process-wide import lock (see the module docstring).
IMPORT_LOCK = ImportLock()
#: The name model loading and older code use; the same lock.
DIFFUSERS_IMPORT_LOCK = IMPORT_LOCK


class SerialisingFinder(importlib.abc.MetaPathFinder):
    """Finds heavy modules through the other finders and hands back their spec with a serialising loader."""

    def __init__(self, packages: Iterable[str], lock: ImportLock) -> None:
        self.packages = frozenset(packages)
        self.lock = lock
        self._loader_classes: dict[type, type] = {}

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname.partition(".")[0] not in self.packages:
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(fullname, path, target)
            if spec is not None:
                serialised = self._serialised(spec.loader)
                if serialised is not None:
                    spec.loader = serialised
                return spec
        return None

    def _serialised(self, loader: Any) -> Any:
        """A copy of ``loader`` as an instance of a subclass whose create/exec run under the lock (None when
        the loader cannot be copied so: a class used as its own loader, slots, no ``exec_module``)."""
        cls = type(loader)
        if loader is None or isinstance(loader, type) or not hasattr(loader, "exec_module") \
                or not hasattr(loader, "__dict__") or cls in self._loader_classes.values():
            return None
        subclass = self._loader_classes.get(cls)
        if subclass is None:
            subclass = self._loader_classes[cls] = _serialising_subclass(cls, self.lock)
        try:
            copy = object.__new__(subclass)
        except TypeError:
            return None
        copy.__dict__.update(loader.__dict__)
        return copy


def _serialising_subclass(cls: type, lock: ImportLock) -> type:
    def create_module(self: Any, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        done = lock.mark_executing(spec.name)  # loaded_module() waits from here until exec_module has run
        try:
            with lock.executing(None):  # an extension module runs its init here
                return cls.create_module(self, spec)
        except BaseException:
            lock.forget(spec.name, done)
            raise

    def exec_module(self: Any, module: ModuleType) -> None:
        with lock.executing(module):
            cls.exec_module(self, module)

    return type(f"Serialised{cls.__name__}", (cls,), {
        "__module__": __name__, "__doc__": f"{cls.__name__}, executing under the import lock.",
        "create_module": create_module, "exec_module": exec_module})


def install_import_hook(packages: Iterable[str] = HEAVY_PACKAGES) -> SerialisingFinder:
    """Put the serialising finder first on ``sys.meta_path`` (once: a second call returns the installed one).

    Call it at start, before any thread but the main one exists; it imports nothing. ``packages`` is for tests
    (a fake slow package); the studio uses :data:`HEAVY_PACKAGES`.
    """
    for finder in sys.meta_path:
        if isinstance(finder, SerialisingFinder):
            return finder
    finder = SerialisingFinder(packages, IMPORT_LOCK)
    sys.meta_path.insert(0, finder)
    return finder


def diffusers_attr(name: str) -> Any:
    """``diffusers.<name>``, imported under :data:`IMPORT_LOCK` the first time."""
    module = sys.modules.get("diffusers")
    # diffusers' lazy module caches a resolved attribute in its __dict__; importing the package itself, or a
    # partly initialised package, goes under the lock like any first import.
    resolved = module.__dict__.get(name) if module is not None else None
    if resolved is not None:
        return resolved
    with IMPORT_LOCK:
        return getattr(importlib.import_module("diffusers"), name)


def loaded_module(name: str) -> ModuleType | None:
    """The heavy module ``name`` if it has been imported, once it has finished executing (waiting while
    another thread executes it); None when it was never imported. Never imports anything: for code that must
    not pay an import (or wake CUDA) just to answer, e.g. the memory figures."""
    module = sys.modules.get(name)
    if module is None:
        return None
    return module if IMPORT_LOCK.finished(name) else None
