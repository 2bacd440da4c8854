"""The studio's scripts as one object on the app context (``ctx.scripts``): the registry, the callbacks,
the sources (consent and loading), and how a generation request's script fields become typed arguments."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from modules.scripts.callbacks import CallbackRegistry, ModelLoaded
from modules.scripts.registry import ScriptRegistry, UnknownScriptError
from modules.scripts.running import GenerateOnce, RunningJob, run_generation
from modules.scripts.script import Script, ScriptArgsError
from modules.scripts.sources import ScriptSources

if TYPE_CHECKING:
    from modules.generation.requests import GenerationRequest
    from modules.generation.results import GenerationResult, OutputOptions
    from modules.jobs.kinds import JobKind
    from modules.jobs.progress import JobControl
    from modules.models.manager import ActiveModel

log = logging.getLogger(__name__)

#: what a bad script field of a request raises (shown to the user as is; 422 over the API)
SCRIPT_ERRORS: tuple[type[Exception], ...] = (UnknownScriptError, ScriptArgsError)


class ScriptHost:
    """Scripts, callbacks and their sources for one running studio."""

    def __init__(self, repo_root: Path, data_dir: Path, *, enable: tuple[str, ...] = (),
                 add_kind: Callable[["JobKind"], None] | None = None,
                 builtin_digests: dict[str, str] | None = None, user_code: bool = True) -> None:
        self.registry = ScriptRegistry()
        self.callbacks = CallbackRegistry()
        self.sources = ScriptSources(repo_root, data_dir, self.callbacks, self.registry, enable=enable,
                                     add_kind=add_kind, builtin_digests=builtin_digests,
                                     user_code=user_code)

    def start(self) -> None:
        """List every source and load the approved ones (start-up; runs no unapproved code)."""
        self.sources.load_all()

    def model_loaded(self, active: "ActiveModel") -> None:
        """The ``model_loaded`` callbacks (a :class:`~modules.models.manager.ModelManager` listener)."""
        self.callbacks.fire("model_loaded", ModelLoaded(name=active.info.name, family=active.model.family.id,
                                                        pipeline=active.model.pipeline))

    # --- requests ----------------------------------------------------------------------------------------

    def resolve(self, req: "GenerationRequest", tab: str) -> tuple[tuple[Script, Any] | None, list[tuple[Script, Any]]]:
        """(the selected script and its typed args, every always-on script of ``tab`` with its typed args);
        raises :data:`SCRIPT_ERRORS` naming what is wrong."""
        selected = None
        call = getattr(req, "script", None)
        if call is not None:
            script = self.registry.selectable_script(call.name, tab)
            selected = (script, script.parse_args(call.args))
        given = {name.strip().lower(): args for name, args in (getattr(req, "alwayson_scripts", None) or {}).items()}
        for name in given:
            self.registry.alwayson_script(name, tab)  # an unknown name is refused, naming it
        alwayson = [(script, script.parse_args(given.get(script.title.lower()))) for script in self.registry.alwayson(tab)]
        return selected, alwayson

    def precheck(self, req: "GenerationRequest", tab: str,
                 check: Callable[["GenerationRequest"], Any] | None = None) -> None:
        """Raise for a request whose scripts cannot run: a bad script field, or the selected script's own
        :meth:`~modules.scripts.script.Script.precheck` (before anything is generated); ``check`` (the job
        kind's precheck) runs on every distinct request the script says it will process."""
        selected, _ = self.resolve(req, tab)
        if selected is None:
            return
        script, args = selected
        try:
            planned = script.precheck(req, args)
        except ValueError:
            raise  # the refusals a precheck is for (InvalidRequestError, ScriptArgsError...): shown as they are
        except Exception as exc:  # a fault in the script's own code: reported, and the request refused naming it
            self.callbacks.report(script.source if script.source != "built-in" else script.title,
                                  f"{script.title}.precheck", exc)
            raise ScriptArgsError(f"script {script.title!r} could not check this request "
                                  f"({type(exc).__name__}: {exc})") from None
        if check is None or not planned:
            return
        seen: set[str] = set()
        for cell in planned:
            key = cell.model_dump_json(exclude={"seed", "subseed", "init_images", "mask"})
            if key not in seen:
                seen.add(key)
                check(cell)

    def run(self, req: "GenerationRequest", tab: str, control: "JobControl", output: "OutputOptions",
            generate_once: GenerateOnce, *, grids_dir: Path | None = None,
            user_errors: tuple[type[Exception], ...] = ()) -> "GenerationResult":
        selected, alwayson = self.resolve(req, tab)
        job = RunningJob(request=req, tab=tab, control=control, callbacks=self.callbacks,
                         generate_once=generate_once, output=output, alwayson=alwayson, grids_dir=grids_dir,
                         user_errors=user_errors + SCRIPT_ERRORS)
        return run_generation(job, selected)
