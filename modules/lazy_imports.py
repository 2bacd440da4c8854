"""One lock for diffusers' lazy imports when more than one thread may trigger them.

diffusers resolves ``from diffusers import X`` on first use. When two threads do that at once (the job worker
loading a checkpoint while a request thread resolves a sampler's scheduler class to check a request), CPython's
import-deadlock avoidance can hand one of them a partly initialised module, and the load fails with "cannot
import name 'UNet2DConditionModel' from 'diffusers'". The two places where that happens take this lock: model
loading (``modules.models.loader.load_model``) holds it for the whole load, and :func:`diffusers_attr` (the
sampler registry's scheduler classes) holds it for a first import. Once a class is imported, ``diffusers_attr``
returns it without the lock.
"""

from __future__ import annotations

import importlib
import sys
import threading
from typing import Any

DIFFUSERS_IMPORT_LOCK = threading.RLock()


def diffusers_attr(name: str) -> Any:
    """``diffusers.<name>``, imported under :data:`DIFFUSERS_IMPORT_LOCK` the first time."""
    module = sys.modules.get("diffusers")
    # diffusers' lazy module caches a resolved attribute in its __dict__; importing the package itself, or a
    # partly initialised package, goes under the lock like any first import.
    resolved = module.__dict__.get(name) if module is not None else None
    if resolved is not None:
        return resolved
    with DIFFUSERS_IMPORT_LOCK:
        return getattr(importlib.import_module("diffusers"), name)
