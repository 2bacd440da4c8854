"""``POST /sdapi/v1/options``: what a body changes, decided (and validated) before anything is applied.

Open WebUI switches the model by posting back the whole ``GET /sdapi/v1/options`` dict with a new
``sd_model_checkpoint``; the dict holds ``sd_checkpoint_hash`` (read-only here: it follows the loaded model),
and clients written for AUTOMATIC1111 post A1111 options the studio does not have. A1111 v1.10 answers
those with 200: a value equal to the one in force is a no-op there, ``restrict_api`` options are skipped
silently, and an option it has but the studio lacks is simply stored. So here:

* a read-only key or a key the studio does not have is **ignored** (logged, and named in the answer's
  ``X-Atelier-Ignored-Options`` header) rather than refused. (A1111 fails on a key that none of its options
  has, but the studio cannot tell A1111's ~300 options, and those its extensions add, from a typo; refusing
  them would break the clients that post them, and the header names a typo all the same);
* a known setting with an invalid value is refused (400 naming it) **before** anything is applied, so a
  request never half-applies (switch the model, then fail);
* a value equal to the one in force changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Mapping

from pydantic import ValidationError

from modules.settings import READ_ONLY, Settings, SettingsError

log = logging.getLogger(__name__)

#: response header naming the posted keys that were not applied
IGNORED_HEADER = "X-Atelier-Ignored-Options"
CHECKPOINT_KEY = "sd_model_checkpoint"


@dataclass(frozen=True)
class OptionsChange:
    """A validated ``POST /options`` body: the checkpoint to switch to, the settings to store, what is ignored."""

    checkpoint: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    ignored: dict[str, str] = field(default_factory=dict)  # key -> why it was not applied


def plan_options_change(body: Mapping[str, Any], current: Mapping[str, Any]) -> OptionsChange:
    """Split and validate ``body`` against the settings in force (``current``); SettingsError naming the
    first invalid value. Nothing is applied here."""
    checkpoint: str | None = None
    settings: dict[str, Any] = {}
    ignored: dict[str, str] = {}
    for key, value in body.items():
        if key == CHECKPOINT_KEY:
            if value not in (None, "") and value != current.get(key):  # the loaded one: nothing to switch
                checkpoint = str(value)
        elif key in READ_ONLY:
            if value != current.get(key):
                ignored[key] = "read-only (it follows the loaded model)"
        elif key in Settings.model_fields:
            if value != current.get(key):
                settings[key] = value
        elif value is not None:  # A1111 too takes a null for a key it lacks as "no change"
            ignored[key] = "not a setting of this studio"
    if settings:
        try:
            Settings.model_validate({**{k: v for k, v in current.items() if k in Settings.model_fields},
                                     **settings})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise SettingsError(f"invalid value for {where}: {first['msg']}") from None
    if ignored:
        log.warning("POST /sdapi/v1/options: not applied: %s",
                    "; ".join(f"{key} ({why})" for key, why in ignored.items()))
    return OptionsChange(checkpoint=checkpoint, settings=settings, ignored=ignored)


def _header_safe(key: str) -> str:
    """A posted key as header text: printable ASCII only (any other character would break the answer)."""
    return "".join(c if " " <= c <= "~" else "?" for c in key)


def ignored_header(change: OptionsChange, limit: int = 2000) -> dict[str, str]:
    """The response header listing the ignored keys (none when every key was applied), at most ``limit`` long."""
    if not change.ignored:
        return {}
    text = ", ".join(_header_safe(key) for key in change.ignored)
    text = text if len(text) <= limit else text[:limit - 3] + "..."
    return {IGNORED_HEADER: text.strip() or "?"}  # HTTP forbids a value that starts or ends with white space
