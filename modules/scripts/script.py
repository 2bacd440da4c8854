"""The :class:`Script` base class: what a built-in or user script declares, and what its hooks receive.

A script is a class with a ``title``, the tabs it shows in, its arguments as a pydantic model (``Args``)
and the hooks it implements::

    class Args(BaseModel):
        strength: float = Field(0.5, ge=0, le=1, description="how strongly to tint")

    class Tint(Script):
        title = "Tint"
        alwayson = True            # runs on every job of its tabs, with its arguments from the request
        Args = Args

        def postprocess_image(self, p, args, image):
            image.image = image.image.convert("L").convert("RGB")

Selectable scripts (``alwayson = False``) take over the job with :meth:`Script.run`, which calls
``p.process(request)`` as often as it likes (the X/Y/Z plot calls it once per cell). Always-on scripts
get the process hooks A1111 users know, in this order: :meth:`before_process`, :meth:`process`, per batch
:meth:`process_batch` (a :class:`~modules.generation.addons.hooks.SamplingHook` around the first pass of
each batch: it may rewrite the batch's prompts), :meth:`postprocess_image` per image before it is saved,
and :meth:`postprocess` with the finished result.

Every hook receives **typed** values: ``p`` (:class:`ScriptJob`: the job's request as a typed copy,
``p.request``, which a hook may replace with ``p.request.model_copy(update=...)``), ``args`` (an
instance of the script's ``Args``) and a typed parameter object. Never a positional list.

A1111 clients send a script's arguments positionally (``script_args: [...]``); a script that A1111 also
has lists the names of its positional arguments in ``a1111_args`` (per tab where they differ, by
overriding :meth:`Script.args_from_positional`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, ValidationError

if TYPE_CHECKING:
    from PIL import Image

    from modules.generation.addons.hooks import SamplingContext
    from modules.generation.requests import GenerationRequest
    from modules.generation.results import GenerationResult
    from modules.jobs.progress import JobControl

#: the tabs a script can show in
TABS = ("txt2img", "img2img")


class NoArgs(BaseModel):
    """The arguments of a script that takes none."""

    model_config = ConfigDict(extra="forbid")


class ScriptArgsError(ValueError):
    """A script's arguments do not fit its ``Args`` (the message names the script and the field)."""


class ScriptJob(Protocol):
    """What a script's hooks see of the running job (``p`` in A1111's scripts)."""

    request: "GenerationRequest"      # a typed copy; replace it (model_copy) to change what runs
    tab: str                          # "txt2img" or "img2img"
    control: "JobControl"
    warnings: list[str]               # shown with the job's result
    results: list["GenerationResult"]  # every result of ``process`` so far

    def cells(self, count: int, label: str = "cell") -> Any:
        """A context manager: within it, ``count`` calls of :meth:`process` share one progress bar
        ("cell N of M", one ETA over the whole grid)."""

    def process(self, request: "GenerationRequest", *, label: str = "") -> "GenerationResult":
        """Run one generation (the request as given, with the job's add-ons, always-on scripts and
        progress) and return its result: what a selectable script's ``run`` builds on."""

    def save_grid(self, image: "Image.Image", infotext: str, *, seed: int = 0) -> Any:
        """Save a grid image with its infotext in the grids folder; returns its path (or None)."""


@dataclass
class BatchInfo:
    """One batch about to be sampled (``process_batch``): prompts may be rewritten in place."""

    batch_index: int
    prompts: list[str]
    negative_prompts: list[str]
    seeds: list[int]
    task: str
    sampling: "SamplingContext | None" = None


@dataclass
class ImageInfo:
    """One image before it is saved (``postprocess_image``): replace ``image`` or add ``infotext`` entries."""

    image: "Image.Image"
    seed: int
    prompt: str
    infotext: dict[str, Any] = field(default_factory=dict)


class Script:
    """Base class of every script (see the module docstring)."""

    #: the name in the UI's Script dropdown, the API's ``script_name`` and ``alwayson_scripts`` key
    title: ClassVar[str] = ""
    #: the tabs it shows in
    tabs: ClassVar[tuple[str, ...]] = TABS
    #: True: runs on every job of its tabs (an accordion in the UI); False: selectable in the Script dropdown
    alwayson: ClassVar[bool] = False
    #: its arguments, with defaults, ranges and descriptions (the UI and ``/sdapi/v1/script-info`` come from it)
    Args: ClassVar[type[BaseModel]] = NoArgs
    #: A1111's positional order of its arguments (``script_args: [...]``), by ``Args`` field name
    a1111_args: ClassVar[tuple[str, ...]] = ()
    #: callbacks and hooks run in (priority, title) order: lower first
    priority: ClassVar[int] = 100

    #: set by the loader: where the script came from ("built-in", "scripts/x.py", "extension example")
    source: str = "built-in"

    # --- arguments ---------------------------------------------------------------------------

    def parse_args(self, args: dict[str, Any] | BaseModel | None) -> BaseModel:
        """The typed arguments from a dict by name (missing ones take their defaults)."""
        if isinstance(args, self.Args):
            return args
        given = dict(args or {}) if not isinstance(args, BaseModel) else args.model_dump()
        unknown = sorted(set(given) - set(self.Args.model_fields))
        if unknown:  # never accepted and silently ignored, whatever the script's own model allows
            raise ScriptArgsError(f"script {self.title!r}: unknown argument(s) {', '.join(map(repr, unknown))} "
                                  f"(extra inputs are not permitted); it takes: "
                                  f"{', '.join(self.Args.model_fields) or 'no arguments'}")
        try:
            return self.Args.model_validate(dict(args or {}) if not isinstance(args, BaseModel) else args.model_dump())
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'args'}: {err['msg']}"
                                 for err in exc.errors())
            raise ScriptArgsError(f"script {self.title!r}: {problems}") from None

    def args_from_positional(self, values: list[Any], tab: str) -> dict[str, Any]:
        """A1111's positional ``script_args`` as named arguments (extra values are refused)."""
        names = self.a1111_args
        if len(values) > len(names):
            raise ScriptArgsError(f"script {self.title!r} takes at most {len(names)} positional argument(s) "
                                  f"({', '.join(names) or 'none'}); got {len(values)}")
        return dict(zip(names, values))

    def shows_in(self, tab: str) -> bool:
        return tab in self.tabs

    # --- UI ---------------------------------------------------------------------------------------

    def build_ui(self, tab: str) -> dict[str, Any] | None:
        """Build this script's own Gradio widgets, keyed by ``Args`` field name; None: built from ``Args``."""
        return None

    # --- selectable ---------------------------------------------------------------------------------

    def precheck(self, request: "GenerationRequest", args: Any) -> "list[GenerationRequest] | None":
        """Selectable scripts: raise (e.g. ``InvalidRequestError``, naming the problem) for a request this script
        cannot run, before the job is queued and again before it runs (the X/Y/Z plot checks its axes and
        refuses an over-size grid here). Makes nothing. May return the requests ``run`` will process: each is
        then checked as a plain job of its kind (checkpoint names, add-ons, sizes against the model)."""
        return None

    def run(self, p: ScriptJob, args: Any) -> "GenerationResult":
        """Selectable scripts: run the job (call ``p.process`` as often as needed) and return its result."""
        return p.process(p.request)

    # --- always-on hooks (A1111's names) -------------------------------------------------------------

    def before_process(self, p: ScriptJob, args: Any) -> None:
        """Very early, before anything is decided: may replace ``p.request``."""

    def process(self, p: ScriptJob, args: Any) -> None:
        """Before processing begins: the common place to change ``p.request``."""

    def process_batch(self, p: ScriptJob, args: Any, batch: BatchInfo) -> None:
        """Before each batch's first pass is sampled: may rewrite ``batch.prompts`` in place."""

    def postprocess_image(self, p: ScriptJob, args: Any, image: ImageInfo) -> None:
        """Each image, before it is saved: may replace ``image.image`` or add infotext entries."""

    def postprocess(self, p: ScriptJob, args: Any, result: "GenerationResult") -> None:
        """After everything, with the job's result."""

    # --- infotext -------------------------------------------------------------------------------------

    def args_from_infotext(self, params: dict[str, Any]) -> dict[str, Any] | None:
        """Pasting an infotext this script wrote: its arguments by name, or None when it is not this script's."""
        return None
