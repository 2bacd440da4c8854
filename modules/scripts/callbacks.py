"""The one callback registry: every event a script or extension can listen to, with a typed parameter object.

Events (:data:`EVENTS`) and what their callbacks receive:

=====================  ==================================================================================
``app_started``        :class:`AppStarted` (``app``: the FastAPI app, to add routes; ``ctx``)
``model_loaded``       :class:`ModelLoaded` (the loaded model's name, family and pipeline)
``before_image_saved`` :class:`ImageSaved` (the image, its infotext text, which may be changed)
``image_saved``        :class:`ImageSaved` (with ``path`` filled in)
``ui_tabs``            :class:`UiTabs` (call ``add(title, build)``; ``build()`` makes Gradio components)
``ui_settings``        :class:`UiSettings` (call ``add(key, default, label, section)``)
``infotext_pasted``    :class:`InfotextPasted` (the text and the parsed dict, which may be changed)
``step``               :class:`StepInfo` (step, total steps, timestep, latents; like A1111's ``cfg_denoiser``)
=====================  ==================================================================================

Callbacks run in a stable order: ``priority`` (lower first), then the owner's name, then the order of
registration. A callback that raises is reported (the log, :attr:`CallbackRegistry.problems`, and the
Extensions tab) and the others still run: one broken extension never stops the studio or a job.
"""

from __future__ import annotations

import logging
import threading
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

log = logging.getLogger(__name__)

EVENTS = ("app_started", "model_loaded", "before_image_saved", "image_saved", "ui_tabs", "ui_settings",
          "infotext_pasted", "step")


@dataclass
class AppStarted:
    app: Any
    ctx: Any


@dataclass
class ModelLoaded:
    name: str
    family: str
    pipeline: Any


@dataclass
class ImageSaved:
    image: Any
    infotext: str
    kind: str               # "txt2img", "img2img", "grid"...
    path: Any = None        # the saved file (image_saved only)


@dataclass
class UiTabs:
    tabs: list[tuple[str, Callable[[], Any]]] = field(default_factory=list)

    def add(self, title: str, build: Callable[[], Any]) -> None:
        """A top-level tab: ``build()`` is called inside ``gr.Tab(title)`` to make its components."""
        self.tabs.append((str(title), build))


@dataclass
class SettingOption:
    key: str
    default: Any
    label: str
    section: str
    owner: str


@dataclass
class UiSettings:
    owner: str = ""
    options: list[SettingOption] = field(default_factory=list)

    def add(self, key: str, default: Any, label: str = "", section: str = "Extensions") -> None:
        """A setting shown in the Settings tab and kept in the settings file (``/sdapi/v1/options`` too)."""
        self.options.append(SettingOption(key=str(key), default=default, label=label or str(key),
                                          section=section, owner=self.owner))


@dataclass
class InfotextPasted:
    text: str
    params: dict[str, Any]


@dataclass
class StepInfo:
    step: int               # 1-based: the step just finished
    total: int              # steps of this pass
    timestep: Any
    latents: Any            # the latents after this step (a tensor); a callback must not keep it
    task: str               # "txt2img", "img2img", "inpaint", "hires", "refiner"
    batch_index: int


@dataclass(frozen=True)
class Callback:
    event: str
    fn: Callable[[Any], Any]
    owner: str
    priority: int
    order: int


@dataclass(frozen=True)
class Problem:
    """A failure of a script, an extension or a callback, for the Extensions tab and the log."""

    owner: str
    where: str
    message: str
    trace: str = ""


class CallbackRegistry:
    """Callbacks by event, in a stable order; failures isolated and kept as :class:`Problem` entries."""

    def __init__(self) -> None:
        self._callbacks: dict[str, list[Callback]] = {event: [] for event in EVENTS}
        self._lock = threading.Lock()
        self._order = 0
        self.problems: list[Problem] = []

    def on(self, event: str, fn: Callable[[Any], Any], *, owner: str = "studio", priority: int = 100) -> Callable:
        """Register ``fn`` for ``event`` (one of :data:`EVENTS`); returns ``fn`` (usable as a decorator's body)."""
        if event not in self._callbacks:
            raise ValueError(f"unknown callback event {event!r}; one of: {', '.join(EVENTS)}")
        with self._lock:
            self._order += 1
            self._callbacks[event].append(Callback(event, fn, owner, int(priority), self._order))
            self._callbacks[event].sort(key=lambda cb: (cb.priority, cb.owner.lower(), cb.order))
        return fn

    def remove_owner(self, owner: str) -> int:
        """Drop every callback of ``owner`` (an extension disabled); returns how many."""
        with self._lock:
            removed = 0
            for event, callbacks in self._callbacks.items():
                kept = [cb for cb in callbacks if cb.owner != owner]
                removed += len(callbacks) - len(kept)
                self._callbacks[event] = kept
            return removed

    def callbacks(self, event: str) -> list[Callback]:
        with self._lock:
            return list(self._callbacks.get(event, ()))

    def has(self, event: str) -> bool:
        return bool(self._callbacks.get(event))

    def fire(self, event: str, params: Any, *, warnings: list[str] | None = None) -> Any:
        """Call every callback of ``event`` with ``params``; a failure is reported, the rest still run.
        ``warnings`` (a job's) receives one line per failure. Returns ``params``."""
        for cb in self.callbacks(event):
            try:
                cb.fn(params)
            except Exception as exc:  # noqa: BLE001 - an extension's fault must not stop the studio
                self.report(cb.owner, f"callback {event}", exc, warnings=warnings)
        return params

    def report(self, owner: str, where: str, exc: BaseException, *, warnings: list[str] | None = None) -> Problem:
        """Record a failure of ``owner`` (log, problems list, and the job's ``warnings`` when given)."""
        message = f"{type(exc).__name__}: {exc}"
        problem = Problem(owner=owner, where=where, message=message,
                          trace="".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-4000:])
        with self._lock:
            self.problems.append(problem)
            del self.problems[:-200]
        log.warning("%s failed in %s: %s", owner, where, message)
        if warnings is not None:
            warnings.append(f"{owner}: {where} failed ({message}); the job went on without it")
        return problem
