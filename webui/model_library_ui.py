"""The Models tab's library: every kind of model file (pick a kind, search), inspect one (family, hashes,
kohya ss_* fields, trigger words, notes, preview), rename, delete to the trash, convert a LoRA, and hash
every file in the background with its progress. The logic is in modules/models/library.py and
hash_worker.py; LoRA conversion is the convert_lora job kind."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any, Iterator

import gradio as gr

from webui.common import owner_of, readable, status_html
from webui.progress import bar_html, run_and_follow

if TYPE_CHECKING:
    from modules.app_context import AppContext
    from modules.models.library import ModelLibrary

COLUMNS = ["File", "Family", "Size", "AutoV2", "addnet (LoRA)", "Loaded"]


def details_html(library: "ModelLibrary", kind: str, entry_id: str) -> str:
    """The inspector: a preview, the facts and the file's metadata as an HTML table (all text escaped)."""
    entry = library.find(kind, entry_id)
    info = library.details(entry)
    facts: list[tuple[str, str]] = [("Path", info["path"]), ("Family", info["family"] or "—"),
                                    ("Size", info["size_text"]),
                                    ("AutoV2", info["autov2"] or "not hashed yet (Hash all)"),
                                    ("SHA-256", info["sha256"] or "not hashed yet")]
    if kind == "lora":
        facts.append(("addnet hash", info["addnet"] or "not hashed yet"))
    if info["trigger_words"]:
        facts.append(("Trigger words", ", ".join(info["trigger_words"])))
    user = info["user_metadata"]
    for key in ("activation text", "description", "notes"):
        if user.get(key):
            facts.append((key.capitalize(), str(user[key])))
    if info["user_metadata_note"]:
        facts.append(("Notes file", info["user_metadata_note"]))
    facts += [(key, value if len(value) <= 300 else value[:300] + "…")
              for key, value in list(info["training"].items()) + list(info["metadata"].items())]
    rows = "".join(f"<tr><th style='text-align:left;padding-right:1em;vertical-align:top'>{html.escape(k)}</th>"
                   f"<td style='word-break:break-all'>{html.escape(v)}</td></tr>" for k, v in facts)
    picture = library.preview_data_uri(entry)
    image = (f"<img src='{html.escape(picture, quote=True)}' alt='preview' "
             f"style='max-width:192px;float:right;margin-left:1em'>") if picture else ""
    return f"<div class='atelier-model-library-info'>{image}<table>{rows}</table></div>"


def _hash_progress(ctx: "AppContext") -> str:
    if ctx.hashing is None:
        return ""
    p = ctx.hashing.progress()
    if p.running:
        return bar_html("running", p.done / max(p.total, 1), f"Hashing {p.done}/{p.total}: {p.current}")
    if p.finished_at is not None:
        errors = f", {len(p.errors)} unreadable" if p.errors else ""
        return bar_html("done", 1.0, f"Hashed: {p.total} files ({p.computed} new{errors})")
    return ""


def build_model_library(ctx: "AppContext", library: "ModelLibrary") -> None:
    """The library accordion (call inside the Models tab)."""
    from modules.models.library import KIND_LABELS, LIBRARY_KINDS

    with gr.Accordion("All model files", open=False, elem_id="models_library") as accordion:
        with gr.Row():
            kind = gr.Dropdown([(KIND_LABELS[k], k) for k in LIBRARY_KINDS], value="lora", label="Kind",
                               elem_id="library_kind", scale=1)
            search = gr.Textbox(label="Search", placeholder="words of the file name", elem_id="library_search",
                                scale=3)
            refresh = gr.Button("Refresh", size="sm", scale=0, min_width=100, elem_id="library_refresh")
            hash_all = gr.Button("Hash all", size="sm", scale=0, min_width=100, elem_id="library_hash_all")
        hash_status = gr.HTML(_hash_progress(ctx), elem_id="library_hash_status")
        table = gr.Dataframe(headers=COLUMNS, value=None, interactive=False, wrap=True, elem_id="library_table",
                             label="Files")
        with gr.Row():
            picked = gr.Dropdown([], label="File", elem_id="library_pick", scale=3)
            inspect = gr.Button("Inspect", elem_id="library_inspect", scale=0, min_width=100)
        details = gr.HTML("", elem_id="library_details")
        with gr.Row():
            new_name = gr.Textbox(label="New name (extension kept)", elem_id="library_new_name", scale=2)
            rename = gr.Button("Rename", elem_id="library_rename", scale=0, min_width=100)
            sure = gr.Checkbox(False, label="Yes, move it to the trash", elem_id="library_sure", scale=1)
            delete = gr.Button("Delete", variant="stop", elem_id="library_delete", scale=0, min_width=100)
        with gr.Row():
            lora_to = gr.Radio([("kohya (A1111)", "kohya"), ("diffusers / PEFT", "peft")], value="kohya",
                               label="Convert the LoRA to", elem_id="library_lora_to")
            lora_family = gr.Radio(["auto", "sd1", "sd2", "sdxl"], value="auto", label="Made for",
                                   elem_id="library_lora_family")
            convert = gr.Button("Convert LoRA", elem_id="library_lora_convert", scale=0, min_width=120)
        status = gr.HTML("", elem_id="library_status")
        timer = gr.Timer(1.0, active=False)

    def listing(kind_: str, search_: str) -> tuple[Any, Any]:
        try:
            rows = library.rows(kind_, search_ or "")
        except LookupError:
            return [], gr.update(choices=[], value=None)
        ids = [row[0] for row in rows]
        return rows, gr.update(choices=ids, value=ids[0] if ids else None)

    def on_inspect(kind_: str, entry_id: str) -> tuple[str, str]:
        try:
            return details_html(library, kind_, entry_id or ""), ""
        except LookupError as exc:
            return "", status_html(str(exc), "error")

    def on_rename(kind_: str, entry_id: str, name: str, search_: str) -> tuple[str, Any, Any]:
        try:
            renamed = library.rename(kind_, entry_id or "", name)
        except (LookupError, OSError) as exc:
            return status_html(readable(exc), "error"), gr.skip(), gr.skip()
        rows, _ = listing(kind_, search_)
        return (status_html(f"Renamed to {renamed.id}", "ok"), rows,
                gr.update(choices=list(dict.fromkeys([*(row[0] for row in rows), renamed.id])), value=renamed.id))

    def on_delete(kind_: str, entry_id: str, sure_: bool, search_: str) -> tuple[str, Any, Any, bool]:
        if not sure_:
            return status_html("Tick “Yes, move it to the trash” first.", "warn"), gr.skip(), gr.skip(), False
        try:
            moved = library.delete(kind_, entry_id or "")
        except (LookupError, OSError) as exc:
            return status_html(readable(exc), "error"), gr.skip(), gr.skip(), False
        rows, picker = listing(kind_, search_)
        return status_html(f"Moved to {ctx.paths.shown(moved)}", "ok"), rows, picker, False

    def on_hash_all() -> tuple[str, Any]:
        if ctx.hashing is None:
            return status_html("Background hashing is not available.", "error"), gr.skip()
        ctx.hashing.start()
        return _hash_progress(ctx), gr.Timer(active=True)

    def on_tick(kind_: str, search_: str) -> tuple[str, Any, Any]:
        running = ctx.hashing is not None and ctx.hashing.progress().running
        rows = gr.skip() if running else listing(kind_, search_)[0]
        return _hash_progress(ctx), rows, gr.Timer(active=running)

    def on_convert(kind_: str, entry_id: str, to: str, family: str, request: gr.Request) -> Iterator[str]:
        from modules.models.file_jobs import ConvertLoraRequest

        if kind_ != "lora":
            yield status_html("Pick the LoRA kind and a LoRA file first.", "warn")
            return
        try:
            req = ConvertLoraRequest(source=entry_id or "", to=to, family=family)
        except ValueError as exc:
            yield status_html(readable(exc), "error")
            return
        for job, text in run_and_follow(ctx, req, owner_of(request)):
            if job is None:
                yield text
            elif job.error:
                yield bar_html("failed", 1.0, f"Failed: {ctx.paths.scrub(job.error)}")
            else:
                yield bar_html("done", 1.0, f"Done: {(job.result or {}).get('path', '')}")

    for trigger in (kind.change, search.submit, refresh.click, accordion.expand):
        trigger(listing, inputs=[kind, search], outputs=[table, picked], api_visibility="private")
    inspect.click(on_inspect, inputs=[kind, picked], outputs=[details, status], api_visibility="private")
    picked.input(on_inspect, inputs=[kind, picked], outputs=[details, status], api_visibility="private")
    rename.click(on_rename, inputs=[kind, picked, new_name, search], outputs=[status, table, picked],
                 api_visibility="private")
    delete.click(on_delete, inputs=[kind, picked, sure, search], outputs=[status, table, picked, sure],
                 api_visibility="private")
    hash_all.click(on_hash_all, outputs=[hash_status, timer], api_visibility="private")
    timer.tick(on_tick, inputs=[kind, search], outputs=[hash_status, table, timer], api_visibility="private",
               show_progress="hidden")
    convert.click(on_convert, inputs=[kind, picked, lora_to, lora_family], outputs=[status],
                  api_visibility="private", concurrency_limit=None)
