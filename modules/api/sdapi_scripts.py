"""Scripts over the A1111 API: ``script_name`` / ``script_args`` and ``alwayson_scripts`` as typed request fields.

A1111 clients name a selectable script by its title (any case) and send its arguments positionally, as the
values of the script's UI (``"script_args": [1, "1,2,3", ...]``); Atelier also takes them as an object by
argument name (``"script_args": {"x_type": "Seed", ...}``). ``alwayson_scripts`` maps an always-on script's
title to ``{"args": [...]}`` (positional) or ``{"args": {...}}`` (by name); a script left out takes its
defaults. Both become the typed request's ``script`` (:class:`~modules.scripts.requests.ScriptCall`) and
``alwayson_scripts`` (title -> arguments by name), which the kind's precheck validates at submit.

A1111's answers are kept: an unknown ``script_name`` is a 422 "Script 'x' not found"; a selectable script in
``alwayson_scripts`` is a 422. Atelier's leniency for always-on scripts the studio does not have (ADetailer in
SillyTavern's default request) stays: they are named in ``info.warnings``
(:func:`modules.api.sdapi_notes.request_warnings`). ControlNet's entry is translated by
:func:`modules.generation.controlnet.units.units_from_alwayson`, not here.

``/sdapi/v1/scripts`` and ``/sdapi/v1/script-info`` (:func:`scripts_list`, :func:`script_infos`) describe the
same registry in A1111's shapes.
"""

from __future__ import annotations

import enum
import types
import typing
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from modules.api.errors import ApiError

if TYPE_CHECKING:
    from pydantic.fields import FieldInfo

    from modules.api.sdapi_models import _SdGenerationPayload
    from modules.app_context import AppContext
    from modules.generation.requests import GenerationRequest
    from modules.scripts.registry import ScriptRegistry
    from modules.scripts.script import Script

#: always-on entries translated elsewhere (the ControlNet units, :mod:`modules.generation.controlnet.units`)
TRANSLATED_ELSEWHERE = frozenset({"controlnet"})
#: ``script_name`` values meaning "no script" (A1111 clients send null or "", some "None")
NO_SCRIPT = ("", "none")


def registry_of(ctx: "AppContext") -> "ScriptRegistry | None":
    scripts = getattr(ctx, "scripts", None)
    return scripts.registry if scripts is not None else None


def tab_of(req: "GenerationRequest") -> str:
    return "img2img" if getattr(req, "kind", "txt2img") != "txt2img" else "txt2img"


def _named(script: "Script", args: Any, tab: str, where: str) -> dict[str, Any]:
    """``args`` (a positional list or an object by name) as the script's arguments by name, checked against
    its ``Args``; a 422 naming ``where`` and the field when they do not fit."""
    from modules.scripts.host import SCRIPT_ERRORS

    if args is None:
        args = {}
    if not isinstance(args, (list, tuple, Mapping)):
        raise ApiError(422, f"{where}: a list of values (A1111's order) or an object by argument name, "
                            f"not {type(args).__name__}", "ScriptError")
    try:
        named = script.args_from_positional(list(args), tab) if isinstance(args, (list, tuple)) else dict(args)
        script.parse_args(named)  # refused here, naming the field, rather than after queueing
    except SCRIPT_ERRORS as exc:
        raise ApiError(422, f"{where}: {exc}", "ScriptError") from None
    return named


def selected_script(registry: "ScriptRegistry | None", name: str | None, args: Any, tab: str) -> Any:
    """The typed ``script`` field for ``script_name`` / ``script_args`` (None: no script)."""
    from modules.scripts.registry import ScriptRegistry, UnknownScriptError
    from modules.scripts.requests import ScriptCall

    if name is None or name.strip().lower() in NO_SCRIPT:
        return None
    try:
        script = (registry or ScriptRegistry()).selectable_script(name.strip(), tab)
    except UnknownScriptError as exc:
        raise ApiError(422, str(exc), "ScriptNotFound") from None
    return ScriptCall(name=script.title, args=_named(script, args, tab, "script_args"))


def alwayson_arguments(registry: "ScriptRegistry | None", entries: Mapping[str, Any] | None,
                       tab: str) -> dict[str, dict[str, Any]]:
    """The typed ``alwayson_scripts`` (title -> arguments by name) for the registered always-on scripts named in
    A1111's ``alwayson_scripts``; names the studio does not have are left to the warnings (sdapi_notes)."""
    from modules.scripts.registry import UnknownScriptError

    out: dict[str, dict[str, Any]] = {}
    for name, entry in (entries or {}).items():
        key = str(name).strip().lower()
        script = registry.get(key) if registry is not None and key not in TRANSLATED_ELSEWHERE else None
        if script is None:
            continue
        try:
            script = registry.alwayson_script(key, tab)  # a selectable one here is a 422, as in A1111
        except UnknownScriptError as exc:
            raise ApiError(422, f"alwayson_scripts: {exc}", "ScriptError") from None
        where = f"alwayson_scripts.{name}"
        if script.title in out:
            raise ApiError(422, f"{where}: {script.title!r} is named twice (titles are matched in any case)",
                           "ScriptError")
        if not isinstance(entry, Mapping):
            raise ApiError(422, f"{where}: an object {{\"args\": [...]}} or {{\"args\": {{...}}}}, "
                                f"not {type(entry).__name__}", "ScriptError")
        extra = sorted(set(entry) - {"args"})
        if extra:
            raise ApiError(422, f"{where}: only \"args\" is read; not {', '.join(map(repr, extra))}", "ScriptError")
        out[script.title] = _named(script, entry.get("args"), tab, f"{where}.args")
    return out


def registered_alwayson(ctx: "AppContext", tab: str) -> list[str]:
    """Lower-case titles of the always-on scripts ``tab`` runs (the registry's, then those translated elsewhere)."""
    registry = registry_of(ctx)
    titles = [s.title.lower() for s in registry.alwayson(tab)] if registry is not None else []
    return [*titles, *(name for name in sorted(TRANSLATED_ELSEWHERE) if name not in titles)]


def with_scripts(ctx: "AppContext", payload: "_SdGenerationPayload", req: "GenerationRequest") -> tuple[Any, list[str]]:
    """``req`` with the payload's scripts as typed fields, and a note for arguments sent without a script."""
    registry = registry_of(ctx)
    tab = tab_of(req)
    script = selected_script(registry, payload.script_name, payload.script_args, tab)
    alwayson = alwayson_arguments(registry, payload.alwayson_scripts, tab)
    notes = []
    if script is None and payload.script_args:
        notes.append("script_args: sent without script_name and not used")
    if script is None and not alwayson:
        return req, notes
    return req.model_copy(update={"script": script, "alwayson_scripts": alwayson}), notes


# --- /sdapi/v1/scripts and /sdapi/v1/script-info ------------------------------------------------------------

def scripts_list(ctx: "AppContext") -> dict[str, list[str]]:
    """``{"txt2img": [...], "img2img": [...]}``: lower-case titles, the selectable scripts then the always-on
    ones a request can address (A1111 lists every script of a tab by its lower-cased title)."""
    registry = registry_of(ctx)
    out = {}
    for tab in ("txt2img", "img2img"):
        selectable = [s.title.lower() for s in registry.selectable(tab)] if registry is not None else []
        out[tab] = [*selectable, *registered_alwayson(ctx, tab)]
    return out


def _choices(annotation: Any) -> list[str] | None:
    inner = annotation
    origin = typing.get_origin(inner)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(inner) if a is not type(None)]
        inner = options[0] if len(options) == 1 else inner
        origin = typing.get_origin(inner)
    if origin is typing.Literal:
        return [str(v) for v in typing.get_args(inner)]
    if isinstance(inner, type) and issubclass(inner, enum.Enum):
        return [str(m.value) for m in inner]
    return None


def _bounds(info: "FieldInfo") -> dict[str, Any]:
    out: dict[str, Any] = {"minimum": None, "maximum": None, "step": None}
    for item in info.metadata:
        for attr, key in (("ge", "minimum"), ("gt", "minimum"), ("le", "maximum"), ("lt", "maximum"),
                          ("multiple_of", "step")):
            value = getattr(item, attr, None)
            if value is not None:
                out[key] = value
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    if extra.get("step") is not None:
        out["step"] = extra["step"]
    elif info.annotation is int and out["minimum"] is not None and out["maximum"] is not None:
        out["step"] = 1  # a ranged int is a slider in steps of 1 (A1111 reports its sliders' step)
    return out


def _jsonable(value: Any) -> Any:
    from pydantic_core import to_jsonable_python

    try:
        return to_jsonable_python(value)
    except Exception:  # noqa: BLE001 - a default with no JSON form is shown as its text
        return str(value)


def script_args_info(script: "Script") -> list[dict[str, Any]]:
    """One A1111 ``ScriptArg`` per argument: in ``a1111_args`` order (the positional order), then the
    arguments only Atelier's by-name form sets; ``name`` (Atelier) is the argument's name. The label is the
    field's ``title`` (else its name), the range its ``ge``/``le``, the step and choices its
    ``json_schema_extra`` ``step``/``choices`` (else 1 for a ranged int; a ``Literal``'s or Enum's values)."""
    fields = script.Args.model_fields
    order = [*script.a1111_args, *(name for name in fields if name not in script.a1111_args)]
    out = []
    for name in order:
        info = fields.get(name)
        if info is None:  # a positional slot the studio's script does not use
            out.append({"label": name, "value": None, "minimum": None, "maximum": None, "step": None,
                        "choices": None, "name": name})
            continue
        default = info.get_default(call_default_factory=True)
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        choices = [str(c) for c in extra["choices"]] if isinstance(extra.get("choices"), (list, tuple)) \
            else _choices(info.annotation)
        out.append({"label": info.title or name.replace("_", " ").capitalize(),
                    "value": _jsonable(default), **_bounds(info), "choices": choices, "name": name})
    return out


def script_infos(ctx: "AppContext") -> list[dict[str, Any]]:
    """A1111's ``/script-info``: one entry per script and tab it shows in (``is_img2img``)."""
    registry = registry_of(ctx)
    scripts: Iterable["Script"] = registry.all() if registry is not None else ()
    out = []
    for script in scripts:
        args = script_args_info(script)
        for tab in ("txt2img", "img2img"):
            if script.shows_in(tab):
                out.append({"name": script.title.lower(), "is_alwayson": bool(script.alwayson),
                            "is_img2img": tab == "img2img", "args": args})
    return out
