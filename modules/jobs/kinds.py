"""The job-kind registry: every kind of job is declared once, and the rest is derived from it.

A :class:`JobKind` names its typed request model (a pydantic model with a ``kind`` literal), the
function the worker runs, its precheck (what can be refused before queueing; the UI, both APIs and
the worker all call the same one), how its result is described for the job store, whether the
native API keeps its outputs, and what becomes of it after a crash. From the registry come:

* the queue's dispatch (:meth:`JobKindRegistry.handlers`), the request types it reads back from
  the job store (:meth:`JobKindRegistry.request_types`) and each kind's lane (:meth:`JobKindRegistry.lane_of`);
* the native job API's request union and its OpenAPI document (:meth:`JobKindRegistry.submission_model`);
* the one submit path of the UI, the APIs and scripts (:func:`modules.jobs.submit.submit`).

Adding a kind is one declaration in the module that owns its logic, listed in
:mod:`modules.job_kinds` (extensions call :meth:`JobKindRegistry.register`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Callable, Iterable, Iterator, Literal, Mapping, Union

from pydantic import BaseModel, ConfigDict, Field, create_model

from modules.jobs.lanes import DEVICE_LANE, LaneSpec
from modules.jobs.model import Handler, Job, JobFailure
from modules.jobs.progress import JobControl

if TYPE_CHECKING:
    from modules.app_context import AppContext

#: the worker's function for a kind: (app context, job, its control) -> result
Run = Callable[["AppContext", Job, JobControl], Any]
#: a precheck: raises a user-facing error for a request that cannot run; may return a normalised request
Precheck = Callable[["AppContext", Any], "BaseModel | None"]
#: what the job store keeps of a result (paths, seeds, texts; never pixels)
Describe = Callable[[Any], "dict[str, Any] | None"]


class UnknownJobKind(LookupError):
    """A kind name no module declared."""


@dataclass(frozen=True)
class JobKind:
    """One kind of job, declared once.

    ``keeps_outputs``: submitted through the native API the job saves every image it makes (its
    request's ``save_images`` is set) and is resumed after a restart while still waiting.
    ``resumable``: a waiting job of this kind is run after a restart (as long as its request is kept),
    even when not submitted with ``keeps_outputs``; a job *running* at a crash is failed with the
    reason, since its partial work is gone (unless ``on_interrupted`` says otherwise). ``previews``: the job shows live previews (the
    ``show_progress_every_n_steps`` setting applies). ``api``: offered by ``POST /api/v1/jobs``.
    ``lane``: the queue lane whose worker runs it (``"device"``; a training kind runs in ``"training"``,
    beside generation). ``yields_to``: lanes this kind pauses for: while one of them has work, its running
    job is asked to pause at its next step (its run calls ``control.pause_point()``; :mod:`modules.jobs.lanes`).
    ``on_interrupted``: what becomes of a job of this kind that was *running* when the process died:
    ``"fail"`` (its partial work is gone) or ``"offer_resume"`` (it keeps its own checkpoints, e.g. a
    training session: it is recorded as ``interrupted`` and offered to be resumed, :mod:`modules.jobs.interrupted`).
    """

    name: str
    request: type[BaseModel]
    run: Run
    summary: str = ""
    precheck: Precheck | None = None
    describe: Describe | None = None
    keeps_outputs: bool = False
    resumable: bool = False
    previews: bool = False
    api: bool = True
    user_errors: tuple[type[Exception], ...] = ()
    lane: str = DEVICE_LANE
    yields_to: tuple[str, ...] = ()
    on_interrupted: Literal["fail", "offer_resume"] = "fail"

    def checked(self, ctx: "AppContext", request: BaseModel) -> BaseModel:
        """``request`` after this kind's precheck (which raises for a request that cannot run)."""
        if self.precheck is None:
            return request
        return self.precheck(ctx, request) or request


def _handler(kind: JobKind, ctx: "AppContext") -> Handler:
    def handle(job: Job, control: JobControl) -> Any:
        try:
            if kind.precheck is not None and job.request is not None:
                kind.precheck(ctx, job.request)
            return kind.run(ctx, job, control)
        except kind.user_errors as exc:
            raise JobFailure(str(exc)) from None

    return handle


class _Dispatch(Mapping[str, Handler]):
    """The handlers of a registry's kinds, by name, for one app context."""

    def __init__(self, registry: "JobKindRegistry", ctx: "AppContext") -> None:
        self._registry = registry
        self._ctx = ctx

    def __getitem__(self, name: str) -> Handler:
        try:
            return _handler(self._registry.get(name), self._ctx)
        except UnknownJobKind:
            raise KeyError(name) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._registry.names())

    def __len__(self) -> int:
        return len(self._registry.names())


class JobKindRegistry:
    """The kinds a studio runs, by name (the order of registration is kept)."""

    def __init__(self, kinds: Iterable[JobKind] = ()) -> None:
        self._kinds: dict[str, JobKind] = {}
        for kind in kinds:
            self.register(kind)

    def register(self, kind: JobKind) -> None:
        if kind.name in self._kinds:
            raise ValueError(f"job kind {kind.name!r} is declared twice")
        declared = kind.request.model_fields.get("kind")
        if declared is None or declared.default != kind.name:
            raise ValueError(f"the request of job kind {kind.name!r} must have kind = {kind.name!r}")
        self._kinds[kind.name] = kind

    def get(self, name: str) -> JobKind:
        try:
            return self._kinds[name]
        except KeyError:
            raise UnknownJobKind(f"unknown job kind {name!r}; this studio runs {', '.join(self._kinds)}") from None

    def of(self, request: BaseModel) -> JobKind:
        return self.get(str(getattr(request, "kind", "")))

    def __iter__(self) -> Iterator[JobKind]:
        return iter(self._kinds.values())

    def names(self) -> list[str]:
        return list(self._kinds)

    def lane_of(self, name: str) -> LaneSpec:
        """The queue's lane policy, read live: a kind's lane and the lanes it yields to (the device lane for
        a name no module declared)."""
        kind = self._kinds.get(name)
        return LaneSpec(kind.lane, kind.yields_to) if kind is not None else LaneSpec()

    def offers_resume(self, name: str) -> bool:
        """Whether a job of kind ``name`` left running by a dead process is offered to be resumed (not failed)."""
        kind = self._kinds.get(name)
        return kind is not None and kind.on_interrupted == "offer_resume"

    def request_types(self) -> dict[str, type[BaseModel]]:
        return {name: kind.request for name, kind in self._kinds.items()}

    def handlers(self, ctx: "AppContext") -> Mapping[str, Handler]:
        """The queue's dispatch, read live (a kind registered later, by an extension, is dispatched too):
        each kind's precheck (again, against the model loaded by then), then its run."""
        return _Dispatch(self, ctx)

    def describe(self, name: str, result: Any) -> dict[str, Any] | None:
        kind = self._kinds.get(name)
        return kind.describe(result) if kind is not None and kind.describe is not None else None

    def submission_model(self) -> Any:
        """The native API's request body: ``{"kind": NAME, "request": {...}}``, one variant per kind offered,
        discriminated by ``kind`` (what FastAPI validates and documents)."""
        variants = [self._envelope(kind) for kind in self._kinds.values() if kind.api]
        if len(variants) == 1:
            return variants[0]
        return Annotated[Union[tuple(variants)], Field(discriminator="kind")]  # type: ignore[return-value]

    @staticmethod
    def _envelope(kind: JobKind) -> type[BaseModel]:
        name = "".join(part.capitalize() for part in re.split(r"[^a-zA-Z0-9]+", kind.name)) + "Job"
        try:
            kind.request()
            request_field: Any = (kind.request, Field(default_factory=kind.request))
        except ValueError:  # the request has required fields
            request_field = (kind.request, ...)
        return create_model(name, __config__=ConfigDict(extra="forbid"), __doc__=kind.summary or None,
                            kind=(Literal[kind.name], ...),  # type: ignore[valid-type]
                            request=request_field)
