"""The History tab: browse every image under ``outputs/`` (search by prompt, filter by model, kind and
date), open one full size with its infotext, send it to a tab, or delete it to ``outputs/.trash/``.
All logic is in :mod:`modules.gallery`; this module only lays it out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any, Callable

import gradio as gr

from webui.common import readable, status_html
from webui.look import RESULT_CLASS, icon

if TYPE_CHECKING:
    from modules.app_context import AppContext

PAGE_SIZE = 48
ALL = "All"


@dataclass
class HistoryTab:
    image: Any
    infotext: Any
    send_txt2img: Any
    send_img2img: Any
    show: Callable[..., list[Any]]   # fn, inputs and outputs that list the first page (on tab select)
    show_inputs: list[Any]
    show_outputs: list[Any]
    send_understand: Any = None  # the shown image to the Understand tab
    selected: Any = None         # gr.State: the shown image's path relative to outputs/
    find_similar: Any = None     # the images most like the shown one (webui.understand_search)


def _day(text: str, label: str) -> date | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{label} must be a date like 2025-01-31, got {text!r}") from None


def _load(path: Any) -> Any:
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        return image.copy()


def build_history_tab(ctx: "AppContext") -> HistoryTab:
    from modules.gallery.history import HistoryIndex
    from modules.gallery.thumbnails import thumbnail

    index = HistoryIndex(ctx.paths.outputs_dir)
    with gr.Row():
        query = gr.Textbox(label="Search prompts and parameters", placeholder="words that must all appear",
                           elem_id="history_query", scale=3)
        model = gr.Dropdown([ALL], value=ALL, label="Model", elem_id="history_model", scale=2)
        kind = gr.Dropdown([ALL], value=ALL, label="Folder", elem_id="history_kind", scale=2)
        date_from = gr.Textbox(label="From (YYYY-MM-DD)", elem_id="history_date_from", scale=1)
        date_to = gr.Textbox(label="To (YYYY-MM-DD)", elem_id="history_date_to", scale=1)
    with gr.Row():
        search = gr.Button("Search", icon=icon("search"), variant="primary", elem_id="history_search", size="md")
        previous = gr.Button("← Previous page", elem_id="history_previous", size="md")
        following = gr.Button("Next page →", elem_id="history_next", size="md")
    status = gr.HTML("", elem_id="history_status")
    page, shown, selected = gr.State(0), gr.State([]), gr.State("")
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            gallery = gr.Gallery(label="History", columns=6, height=520, elem_id="history_gallery", format="jpeg",
                                 allow_preview=False, object_fit="cover", interactive=False, buttons=[],
                                 fit_columns=False)
        with gr.Column(scale=2):
            image = gr.Image(label="Full size", type="pil", interactive=False, format="png", elem_id="history_image",
                             height=360, buttons=["download", "fullscreen"], elem_classes=[RESULT_CLASS])
            where = gr.HTML("", elem_id="history_path")
            infotext = gr.Textbox(label="Generation parameters", lines=5, interactive=False,
                                  elem_id="history_infotext", buttons=["copy"])
            with gr.Row():
                send_txt2img = gr.Button("Send to txt2img", size="sm", elem_id="history_send_to_txt2img")
                send_img2img = gr.Button("Send to img2img", size="sm", elem_id="history_send_to_img2img")
                send_understand = gr.Button("Send to Understand", size="sm", elem_id="history_send_to_understand")
                find_similar = gr.Button("Find similar", icon=icon("search"), size="sm", elem_id="history_find_similar")
                delete = gr.Button("Delete (to trash)", icon=icon("trash"), size="sm", variant="stop",
                                   elem_id="history_delete")

    def run(query_v: str, model_v: str, kind_v: str, from_v: str, to_v: str, page_v: int) -> list[Any]:
        try:
            start, end = _day(from_v, "From"), _day(to_v, "To")
        except ValueError as exc:
            return [gr.skip(), status_html(str(exc), "error"), gr.skip(), gr.skip(), gr.skip(), gr.skip()]
        everything = index.scan()
        found = index.search(query_v, model=None if model_v in (None, "", ALL) else model_v,
                             kind=None if kind_v in (None, "", ALL) else kind_v, date_from=start, date_to=end,
                             entries=everything)
        pages = max(1, -(-len(found) // PAGE_SIZE))
        page_v = max(0, min(int(page_v or 0), pages - 1))
        chunk = found[page_v * PAGE_SIZE:(page_v + 1) * PAGE_SIZE]
        items = []
        for entry in chunk:
            try:
                items.append((_load(thumbnail(entry.path, ctx.paths.cache_dir)), entry.prompt[:60] or entry.relative))
            except OSError:
                continue
        note = (f"{len(found)} image(s) of {len(everything)}" + (f" · page {page_v + 1}/{pages}" if pages > 1 else "")
                if everything else f"No images in {ctx.paths.shown(ctx.paths.outputs_dir)} yet.")
        return [items, status_html(note), [e.relative for e in chunk], page_v,
                gr.update(choices=[ALL, *index.models(everything)]), gr.update(choices=[ALL, *index.kinds(everything)])]

    filters = [query, model, kind, date_from, date_to]
    outputs = [gallery, status, shown, page, model, kind]
    search.click(lambda *v: run(*v[:-1], 0), inputs=[*filters, page], outputs=outputs, api_name="history_search")
    query.submit(lambda *v: run(*v[:-1], 0), inputs=[*filters, page], outputs=outputs, api_visibility="private")
    previous.click(lambda *v: run(*v[:-1], int(v[-1]) - 1), inputs=[*filters, page], outputs=outputs,
                   api_visibility="private")
    following.click(lambda *v: run(*v[:-1], int(v[-1]) + 1), inputs=[*filters, page], outputs=outputs,
                    api_visibility="private")

    def open_image(evt: gr.SelectData, shown_v: list[str]) -> list[Any]:
        index_v = evt.index if isinstance(evt.index, int) else 0
        if not 0 <= index_v < len(shown_v):
            return [gr.skip()] * 4
        relative = shown_v[index_v]
        try:
            path = index.resolve(relative)
            entry = index.entry(path)
            return [_load(path), entry.infotext if entry else "", status_html(f"outputs/{relative}"), relative]
        except (OSError, ValueError) as exc:
            return [None, "", status_html(readable(exc), "error"), ""]

    gallery.select(open_image, inputs=[shown], outputs=[image, infotext, where, selected], api_visibility="private")

    def remove(relative: str, *rest: Any) -> list[Any]:
        if not relative:
            return [gr.skip(), gr.skip(), gr.skip(), status_html("Select an image first.", "warn"),
                    *[gr.skip()] * len(outputs)]
        try:
            target = index.delete(relative)
        except (OSError, ValueError) as exc:
            return [gr.skip(), gr.skip(), gr.skip(), status_html(readable(exc), "error"), *[gr.skip()] * len(outputs)]
        refreshed = run(*rest)
        moved = status_html(f"Moved outputs/{relative} to {target.relative_to(ctx.paths.outputs_dir).as_posix()}", "ok")
        return [None, "", "", moved, *refreshed]

    delete.click(remove, inputs=[selected, *filters, page], outputs=[image, infotext, selected, where, *outputs],
                 api_visibility="private")
    return HistoryTab(image, infotext, send_txt2img, send_img2img, lambda *v: run(*v, 0), filters, outputs,
                      send_understand, selected, find_similar)
