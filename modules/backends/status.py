"""What the page says about a model's backend and the studio's memory: the device and dtype, the backend a
checkpoint runs on (its own choice or the default), the memory mode in force, the quantization and compile
settings, and the last generation's memory line; and the Models tab's per-model backend choice
(``backend_by_model``)."""

from __future__ import annotations

from typing import Any

from modules.backends.choice import backend_for
from modules.backends.memory import mode_from, resolve_mode
from modules.backends.registry import BACKENDS, BackendError, get_backend
from modules.backends.tuning import wanted

#: the picker's value for "no choice of its own: the default backend"
DEFAULT = "default"


def model_key(ctx: Any, title: str) -> str:
    """The ``backend_by_model`` key of a checkpoint title (its file name), or a LookupError."""
    info = ctx.catalog.find(title or "")
    if info is None:
        raise LookupError(f"checkpoint {title!r} not found: press Refresh")
    return info.name


def own_choice(ctx: Any, title: str) -> str:
    """The checkpoint's own backend, or :data:`DEFAULT`."""
    key = model_key(ctx, title)
    return dict(ctx.settings.current.backend_by_model).get(key, DEFAULT)


def set_model_backend(ctx: Any, title: str, backend: str) -> str:
    """Write the checkpoint's backend into ``backend_by_model`` (``default``: remove its own choice);
    returns a sentence saying what it runs on now. Raises BackendError (unknown backend, not installed)."""
    key = model_key(ctx, title)
    choices = dict(ctx.settings.current.backend_by_model)
    if backend == DEFAULT:
        choices.pop(key, None)
    else:
        chosen = get_backend(backend)
        missing = chosen.missing()
        if missing:
            raise BackendError(missing)
        choices[key] = chosen.name
    ctx.settings.update({"backend_by_model": choices})
    name, precision = backend_for(ctx, key)
    label = BACKENDS[name].label + (f" ({precision})" if name == "openvino" else "")
    return f"{key} runs on {label}" + (" (the default)" if backend == DEFAULT else "")


def memory_mode_line(ctx: Any, device: str) -> str:
    """The memory mode in force on ``device`` (auto: decided at each job by free memory), with its switches."""
    settings = ctx.settings.current
    asked = mode_from(ctx.flags, settings)
    mode, note = resolve_mode(asked, device, 0, None) if asked != "auto" or not device.startswith("cuda") \
        else ("auto (by free GPU memory at each job)", None)
    extras = [name for name, on in (("VAE slicing", settings.vae_slicing), ("VAE tiling", settings.vae_tiling),
                                    ("attention slicing", settings.attention_slicing)) if on]
    line = mode.replace("_", " ") + (f" + {', '.join(extras)}" if extras else "")
    return line + (f" ({note})" if note else "")


def last_job_memory(ctx: Any) -> str:
    """The memory line of the newest finished generation: ``"none; peak 2345 MiB"``, or a sentence saying none ran."""
    from modules.jobs.model import JobState

    store = getattr(ctx, "store", None)
    for stored in (store.list(states=[JobState.SUCCEEDED], limit=50) if store is not None else ()):
        meta = stored.result_meta or {}
        if meta.get("peak_memory_mb") is not None:
            return f"{memory_line(meta.get('memory_mode', ''), meta['peak_memory_mb'])} ({stored.kind})"
    return "no generation has finished yet"


def memory_line(mode: str, peak_mb: float | None) -> str:
    """``"memory: none; peak 2345 MiB"`` for a job's result (mode and peak as the job recorded them)."""
    parts = [f"memory: {mode}"] if mode else []
    if peak_mb is not None:
        parts.append(f"peak {peak_mb:.0f} MiB")
    return "; ".join(parts)


def backend_status(ctx: Any, title: str | None) -> list[tuple[str, str]]:
    """(label, value) rows for the Models tab: device, the checkpoint's backend, memory mode, tuning, last job."""
    from modules.models.devices import device_choice, device_line

    device = device_choice(ctx.flags)[0]
    rows = [("Device", device_line(ctx.flags))]
    if title:
        try:
            key = model_key(ctx, title)
            name, precision = backend_for(ctx, key)
            own = own_choice(ctx, title) != DEFAULT
            rows.append(("Backend", BACKENDS[name].label + (f" {precision}" if name == "openvino" else "") +
                         (" (this model's choice)" if own else " (the default: sd_backend or --backend)")))
        except LookupError as exc:
            rows.append(("Backend", str(exc)))
    tuning = wanted(ctx.settings.current).describe()
    rows.append(("Quantization / compile", tuning.removeprefix("denoiser ") if tuning else "none"))
    current = ctx.settings.current
    ratios = [f"{label} {value:g}" for label, value in (("", current.token_merging_ratio),
                                                        ("img2img", current.token_merging_ratio_img2img),
                                                        ("hires", current.token_merging_ratio_hr)) if value]
    rows.append(("Token merging", ", ".join(r.strip() for r in ratios) if ratios else "off"))
    rows.append(("Memory mode in force", memory_mode_line(ctx, device)))
    rows.append(("Last job", last_job_memory(ctx)))
    return rows
