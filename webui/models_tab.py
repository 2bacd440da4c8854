"""The Models tab: every checkpoint with its detected family, size and hash; inspect one (header,
detection, metadata) through :func:`modules.models.detect.detect_checkpoint`; load it; hash it."""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import gradio as gr

from webui.common import active_title, checkpoint_titles, readable, status_html
from webui.look import icon

if TYPE_CHECKING:
    from modules.app_context import AppContext
    from modules.models.catalog import CheckpointInfo

COLUMNS = ["Loaded", "Checkpoint", "Family", "Size", "SHA-256", "Path"]


@dataclass
class ModelsTab:
    picker: Any
    table: Any
    show: Callable[[], Any]      # (picker, rows) listed when the tab is opened (headers only: cheap)


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _human(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    return str(size)


class FamilyCache:
    """Detected family per checkpoint, re-read only when the file changes (header reads only)."""

    def __init__(self, allow_pickle: bool) -> None:
        self._allow_pickle = allow_pickle
        self._seen: dict[tuple[str, int, int], str] = {}

    def family(self, path: Path) -> str:
        from modules.models.detect import detect_checkpoint
        from modules.models.errors import ModelLoadError

        try:
            stat = path.stat()
        except OSError:
            return "missing"
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        if key not in self._seen:
            try:
                self._seen[key] = detect_checkpoint(path, allow_pickle=self._allow_pickle).family.label
            except ModelLoadError as exc:
                self._seen[key] = f"unreadable: {exc.reason}"[:80]
        return self._seen[key]


def rows(ctx: "AppContext", families: FamilyCache) -> list[list[Any]]:
    active = ctx.models.active
    out = []
    for info in ctx.catalog.list():
        sha = ctx.catalog.sha256(info)
        loaded = "✓" if active is not None and active.info.path == info.path else ""
        try:
            size = _human(_size(info.path))
        except OSError:
            size = "?"
        out.append([loaded, ctx.catalog.title(info), families.family(info.path), size,
                    sha[:10] if sha else "not hashed yet", ctx.paths.shown(info.path)])
    return out


def inspect_html(ctx: "AppContext", info: "CheckpointInfo") -> str:
    """Detection result, variant facts, tensor count, dtypes and metadata of one checkpoint."""
    from collections import Counter

    from modules.models.detect import detect_checkpoint
    from modules.models.errors import ModelLoadError
    from modules.models.native_size import native_size

    facts: list[tuple[str, str]] = [("Path", ctx.paths.shown(info.path))]
    try:
        detection = detect_checkpoint(info.path, allow_pickle=ctx.flags.allow_pickle)
        active = ctx.models.active
        (width, height), source = native_size(info.path, detection, active.model if active is not None else None)
        facts += [("Family", f"{detection.family.label} ({detection.family.id})"), ("Detected", detection.reason),
                  ("Native size", f"{width}x{height} (from {source})")]
        facts += [(f"Variant: {k}", str(v)) for k, v in detection.variant.items()]
    except ModelLoadError as exc:
        facts.append(("Detection", readable(exc)))
    if info.path.is_file() and info.path.suffix.lower() == ".safetensors":
        from modules.models.header import read_safetensors_header

        try:
            header = read_safetensors_header(info.path)
            dtypes = Counter(t.dtype for t in header.tensors.values())
            facts += [("Tensors", str(len(header.tensors))),
                      ("Dtypes", ", ".join(f"{d} × {n}" for d, n in dtypes.most_common())),
                      ("File size", _human(header.file_size))]
            facts += [(f"Metadata: {k}", (v if len(v) <= 200 else v[:200] + "…"))
                      for k, v in list(header.metadata.items())[:30]]
        except ModelLoadError as exc:
            facts.append(("Header", readable(exc)))
    elif info.path.is_dir():
        facts.append(("Components", ", ".join(sorted(p.name for p in info.path.iterdir() if p.is_dir()))))
    sha = ctx.catalog.sha256(info)
    facts.append(("SHA-256", sha or "not hashed yet (press # Hash)"))
    body = "".join(f"<tr><th style='text-align:left;padding-right:1em;vertical-align:top'>{html.escape(k)}</th>"
                   f"<td style='word-break:break-all'>{html.escape(v)}</td></tr>" for k, v in facts)
    return f"<table class='atelier-model-info'>{body}</table>"


def build_models_tab(ctx: "AppContext") -> ModelsTab:
    families = FamilyCache(ctx.flags.allow_pickle)
    with gr.Row():
        picker = gr.Dropdown(checkpoint_titles(ctx), value=active_title(ctx), label="Checkpoint",
                             elem_id="models_checkpoint", scale=4)
        refresh = gr.Button("Refresh", icon=icon("refresh"), size="sm", scale=0, min_width=100,
                            elem_id="models_refresh")
    with gr.Row():
        inspect = gr.Button("Inspect", icon=icon("search"), elem_id="models_inspect", size="md")
        load = gr.Button("Load", variant="primary", elem_id="models_load", size="md")
        hash_button = gr.Button("# Hash", elem_id="models_hash", size="md")
    status = gr.HTML("", elem_id="models_status")
    from webui.cluster_line import build_cluster_line

    build_cluster_line(ctx, refresh)  # with --ray: each actor's device, model and job
    from webui.model_backend_ui import build_backend_picker

    build_backend_picker(ctx, picker, refresh)  # device, this checkpoint's backend (backend_by_model), memory
    details = gr.HTML("", elem_id="models_details")
    table = gr.Dataframe(headers=COLUMNS, value=None, interactive=False, wrap=True,
                         elem_id="models_table", label="Checkpoints")

    def find(title: str) -> "CheckpointInfo":
        info = ctx.catalog.find(title or "")
        if info is None:
            raise LookupError(f"checkpoint {title!r} not found: press Refresh")
        return info

    def on_refresh() -> tuple[Any, Any]:
        ctx.catalog.refresh()
        return gr.update(choices=checkpoint_titles(ctx), value=active_title(ctx)), rows(ctx, families)

    def on_inspect(title: str) -> tuple[str, str]:
        try:
            return inspect_html(ctx, find(title)), ""
        except LookupError as exc:
            return "", status_html(str(exc), "error")

    def on_load(title: str) -> tuple[str, Any, Any]:
        from modules.models.load_job import switch_model
        from modules.jobs.model import JobState

        try:
            job = switch_model(ctx, title, owner="webui")
        except Exception as exc:  # noqa: BLE001 - shown to the user
            return status_html(readable(exc), "error"), gr.skip(), gr.skip()
        job.done.wait()
        if job.state is not JobState.SUCCEEDED:
            return status_html(f"Could not load {title}: {job.error}", "error"), gr.skip(), gr.skip()
        return (status_html(f"Loaded {title}", "ok"), gr.update(choices=checkpoint_titles(ctx), value=active_title(ctx)),
                rows(ctx, families))

    def on_hash(title: str) -> tuple[str, Any, Any]:
        try:
            info = find(title)
            if info.is_folder:
                return status_html("Diffusers folders have no single-file hash.", "warn"), gr.skip(), gr.skip()
            sha = ctx.hashes.sha256(info.path)
        except (LookupError, OSError) as exc:
            return status_html(readable(exc), "error"), gr.skip(), gr.skip()
        return (status_html(f"SHA-256 {sha}", "ok"), gr.update(choices=checkpoint_titles(ctx),
                                                              value=ctx.catalog.title(info)), rows(ctx, families))

    refresh.click(on_refresh, outputs=[picker, table], api_visibility="private")
    inspect.click(on_inspect, inputs=[picker], outputs=[details, status], api_visibility="private")
    load.click(on_load, inputs=[picker], outputs=[status, picker, table], api_visibility="private",
               concurrency_limit=None)
    hash_button.click(on_hash, inputs=[picker], outputs=[status, picker, table], api_visibility="private")
    from webui.model_files_ui import build_model_files

    build_model_files(ctx)
    from modules.models.library import ModelLibrary
    from webui.model_library_ui import build_model_library

    build_model_library(ctx, ctx.library or ModelLibrary(ctx.paths, ctx.catalog, ctx.hashes))

    def show() -> tuple[Any, Any]:
        return gr.update(choices=checkpoint_titles(ctx), value=active_title(ctx)), rows(ctx, families)

    return ModelsTab(picker, table, show)
