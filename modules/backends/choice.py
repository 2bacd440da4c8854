"""Which backend a model runs on: its own choice (Settings ``backend_by_model``), else ``--backend``, else
the ``sd_backend`` setting; and the OpenVINO precision (``openvino_precision``)."""

from __future__ import annotations

from typing import Any


def backend_for(ctx: Any, model_name: str | None) -> tuple[str, str]:
    """(backend name, precision) for the checkpoint named ``model_name`` (a file name or title)."""
    settings = ctx.settings.current
    chosen = None
    by_model = dict(getattr(settings, "backend_by_model", {}) or {})
    if model_name:
        stem = str(model_name).split(" [", 1)[0]
        chosen = by_model.get(str(model_name)) or by_model.get(stem)
    chosen = chosen or getattr(ctx.flags, "backend", None) or getattr(settings, "sd_backend", "torch")
    precision = getattr(settings, "openvino_precision", "f32") if chosen == "openvino" else "f32"
    return chosen, precision
