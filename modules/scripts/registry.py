"""The scripts the studio knows: by title (any case), per tab, selectable or always on, with their owner."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from modules.scripts.script import Script, ScriptArgsError


class UnknownScriptError(ValueError):
    """A request names a script the studio does not have (the message names it and lists the known ones)."""


@dataclass(frozen=True)
class Entry:
    script: Script
    owner: str          # "built-in", "script my_file.py", "extension name"


class ScriptRegistry:
    """Scripts by lower-cased title; thread-safe (extensions are enabled and disabled while jobs run)."""

    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}
        self._lock = threading.Lock()

    def register(self, script: Script, owner: str = "built-in") -> None:
        key = script.title.strip().lower()
        if not key:
            raise ValueError(f"{type(script).__name__}: a script needs a title")
        with self._lock:
            existing = self._entries.get(key)
            if existing is not None and existing.owner != owner:
                raise ValueError(f"script title {script.title!r} is already taken by {existing.owner}")
            script.source = owner
            self._entries[key] = Entry(script, owner)

    def remove_owner(self, owner: str) -> list[str]:
        with self._lock:
            gone = [key for key, entry in self._entries.items() if entry.owner == owner]
            for key in gone:
                del self._entries[key]
            return gone

    def get(self, title: str) -> Script | None:
        with self._lock:
            entry = self._entries.get((title or "").strip().lower())
        return entry.script if entry else None

    def all(self) -> list[Script]:
        with self._lock:
            entries = list(self._entries.values())
        return sorted((e.script for e in entries), key=lambda s: (s.priority, s.title.lower()))

    def owners(self) -> dict[str, str]:
        """title -> owner."""
        with self._lock:
            return {entry.script.title: entry.owner for entry in self._entries.values()}

    def selectable(self, tab: str) -> list[Script]:
        return [s for s in self.all() if not s.alwayson and s.shows_in(tab)]

    def alwayson(self, tab: str) -> list[Script]:
        return [s for s in self.all() if s.alwayson and s.shows_in(tab)]

    def selectable_script(self, title: str, tab: str) -> Script:
        """The selectable script ``title`` of ``tab``, or :class:`UnknownScriptError` naming the known ones."""
        script = self.get(title)
        if script is None or script.alwayson or not script.shows_in(tab):
            known = ", ".join(repr(s.title) for s in self.selectable(tab)) or "none"
            why = ("is an always-on script: send it in alwayson_scripts" if script is not None and script.alwayson
                   else f"is not a {tab} script" if script is not None else "not found")
            raise UnknownScriptError(f"Script '{title}' {why}; {tab} scripts here: {known}")
        return script

    def alwayson_script(self, title: str, tab: str) -> Script:
        script = self.get(title)
        if script is None or not script.alwayson or not script.shows_in(tab):
            known = ", ".join(repr(s.title) for s in self.alwayson(tab)) or "none"
            why = ("is a selectable script: send it as script_name" if script is not None and not script.alwayson
                   else f"is not a {tab} script" if script is not None else "not found")
            raise UnknownScriptError(f"always-on script '{title}' {why}; always-on {tab} scripts here: {known}")
        return script

    def typed_args(self, script: Script, args: Any) -> Any:
        """``args`` (by name) as the script's typed ``Args``; :class:`ScriptArgsError` naming the field."""
        return script.parse_args(args)


__all__ = ["Entry", "ScriptArgsError", "ScriptRegistry", "UnknownScriptError"]
