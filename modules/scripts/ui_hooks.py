"""The callbacks and script hooks the web UI calls, without Gradio: extension tabs (``ui_tabs``) and an
infotext pasted into a generation tab (``infotext_pasted``, then each script's ``args_from_infotext``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from modules.scripts.callbacks import InfotextPasted, UiTabs

if TYPE_CHECKING:
    from modules.scripts.host import ScriptHost
    from modules.scripts.script import Script


@dataclass(frozen=True)
class ExtensionTab:
    title: str
    build: Callable[[], Any]
    owner: str


def extension_tabs(host: "ScriptHost") -> list[ExtensionTab]:
    """The top-level tabs the ``ui_tabs`` callbacks add (each callback on its own: a failing one is reported
    and the others still add theirs)."""
    tabs: list[ExtensionTab] = []
    for callback in host.callbacks.callbacks("ui_tabs"):
        params = UiTabs()
        try:
            callback.fn(params)
        except Exception as exc:  # noqa: BLE001 - one broken extension never stops the page
            host.callbacks.report(callback.owner, "callback ui_tabs", exc)
            continue
        tabs += [ExtensionTab(title, build, callback.owner) for title, build in params.tabs]
    return tabs


def build_tab_safely(host: "ScriptHost", tab: ExtensionTab) -> bool:
    """Call ``tab.build()`` (inside the caller's ``gr.Tab``); False (reported) when it raised."""
    try:
        tab.build()
    except Exception as exc:  # noqa: BLE001
        host.callbacks.report(tab.owner, f"building tab {tab.title!r}", exc)
        return False
    return True


@dataclass(frozen=True)
class PastedScript:
    title: str
    args: dict[str, Any]
    used: tuple[str, ...] = ()   # the infotext keys its args_from_infotext read


class _Reading(dict):
    """The parsed infotext as a script reads it: remembers the keys it looked at."""

    def __init__(self, params: dict[str, Any]) -> None:
        super().__init__(params)
        self.read: list[str] = []

    def __getitem__(self, key: Any) -> Any:
        self.read.append(key)
        return super().__getitem__(key)

    def get(self, key: Any, default: Any = None) -> Any:
        self.read.append(key)
        return super().get(key, default)

    def __contains__(self, key: Any) -> bool:
        self.read.append(key)
        return super().__contains__(key)


def pasted_script(host: "ScriptHost", text: str, params: dict[str, Any], tab: str) -> PastedScript | None:
    """Run the ``infotext_pasted`` callbacks on ``params`` (they may change it in place), then the selectable
    script named by its ``Script:`` key, with the arguments its ``args_from_infotext`` reads from them (None:
    no ``Script:``, not a script of this tab, or the script does not recognise them). A script that raises is
    reported and skipped."""
    host.callbacks.fire("infotext_pasted", InfotextPasted(text=text, params=params))
    named = str(params.get("Script", "") or "").strip().lower()
    for script in host.registry.selectable(tab) if named else ():
        if script.title.strip().lower() == named:
            return _args_from(host, script, params)
    return None


def alwayson_pasted(host: "ScriptHost", params: dict[str, Any], tab: str) -> list[PastedScript]:
    """Each always-on script of ``tab`` that recognises ``params`` (its ``args_from_infotext``), with its args."""
    found = []
    for script in host.registry.alwayson(tab):
        pasted = _args_from(host, script, params)
        if pasted is not None:
            found.append(pasted)
    return found


def _args_from(host: "ScriptHost", script: "Script", params: dict[str, Any]) -> PastedScript | None:
    reading = _Reading(params)
    try:
        args = script.args_from_infotext(reading)
    except Exception as exc:  # noqa: BLE001
        host.callbacks.report(script.source, f"{script.title}.args_from_infotext", exc)
        return None
    if args is None:
        return None
    used = tuple(dict.fromkeys(key for key in reading.read if isinstance(key, str) and key in params))
    return PastedScript(script.title, dict(args), used)
