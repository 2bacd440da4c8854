"""Extension options: settings that approved extensions declare with the ``ui_settings`` callback.

An extension calls ``params.add(key, default, label, section)`` in its ``ui_settings`` callback; the option
shows in the Settings tab (a section per ``section``), is stored in the settings file beside the studio's own
settings (``SettingsStore.extra``), and :meth:`ExtensionOptions.values` / :meth:`ExtensionOptions.update` are
what ``GET``/``POST /sdapi/v1/options`` read and write. A value must have the type of the option's default
(an ``int`` default takes whole numbers, a ``float`` any number, a ``bool`` only true/false).

An extension reads its option with ``ExtensionOptions.for_context(ctx).get(key)`` or, without the
context, from the parameter objects it is handed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modules.scripts.callbacks import SettingOption, UiSettings

if TYPE_CHECKING:
    from modules.app_context import AppContext
    from modules.scripts.callbacks import CallbackRegistry
    from modules.settings import SettingsStore


class ExtensionOptionError(ValueError):
    """An extension option's key is unknown or its value has the wrong type (the message names it)."""


class ExtensionOptions:
    """The options declared by the ``ui_settings`` callbacks, with their values from the settings file."""

    def __init__(self, settings: "SettingsStore", callbacks: "CallbackRegistry") -> None:
        self._settings = settings
        self._callbacks = callbacks

    @classmethod
    def for_context(cls, ctx: "AppContext") -> "ExtensionOptions":
        if ctx.scripts is None:
            raise ExtensionOptionError("scripts and extensions are not set up in this studio")
        return cls(ctx.settings, ctx.scripts.callbacks)

    def declared(self) -> list[SettingOption]:
        """Every option of the ``ui_settings`` callbacks (each callback run on its own: a failing one is
        reported and the others still declare theirs); a key declared twice keeps its first declaration,
        and a key of the studio's own settings is refused (reported)."""
        from modules.settings import Settings

        options: dict[str, SettingOption] = {}
        for callback in self._callbacks.callbacks("ui_settings"):
            params = UiSettings(owner=callback.owner)
            try:
                callback.fn(params)
            except Exception as exc:  # noqa: BLE001 - a broken extension must not break the Settings tab
                self._callbacks.report(callback.owner, "callback ui_settings", exc)
                continue
            for option in params.options:
                if option.key in Settings.model_fields:
                    self._callbacks.report(callback.owner, "callback ui_settings",
                                           ValueError(f"option {option.key!r} is a studio setting"))
                elif option.key not in options:
                    options[option.key] = option
        return list(options.values())

    def values(self) -> dict[str, Any]:
        """key -> value (the stored one when it still fits the option, else its default)."""
        stored = self._settings.extra()
        out: dict[str, Any] = {}
        for option in self.declared():
            value = stored.get(option.key, option.default)
            try:
                out[option.key] = _checked(option, value)
            except ExtensionOptionError:
                out[option.key] = option.default
        return out

    def get(self, key: str) -> Any:
        values = self.values()
        if key not in values:
            raise ExtensionOptionError(f"no extension option {key!r}")
        return values[key]

    def split(self, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(the extension options of ``body``, validated; the rest of ``body``): what ``POST /options`` stores
        here and what it hands to the studio's settings. Raises :class:`ExtensionOptionError` naming a bad value."""
        options = {option.key: option for option in self.declared()}
        mine = {key: _checked(options[key], value) for key, value in body.items() if key in options}
        return mine, {key: value for key, value in body.items() if key not in options}

    def update(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Validate and store ``changes`` (all or nothing); returns the values in force."""
        options = {option.key: option for option in self.declared()}
        unknown = sorted(set(changes) - set(options))
        if unknown:
            raise ExtensionOptionError(f"unknown extension option(s): {', '.join(unknown)}")
        checked = {key: _checked(options[key], value) for key, value in changes.items()}
        if checked:
            self._settings.update_extra(checked)
        return self.values()


def _checked(option: SettingOption, value: Any) -> Any:
    default = option.default
    bad = ExtensionOptionError(f"extension option {option.key!r} takes a {type(default).__name__}, "
                               f"got {value!r}")
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) != int(value):
            raise bad
        return int(value)
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise bad
        return value
    return value
