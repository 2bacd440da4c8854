"""Understand → Search: find gallery images like the image at the left or like a text (CLIP-like models), index
the gallery; and History's "Find similar", which opens this sub-tab with the images most like the one shown.

Thin: requests and views come from :mod:`modules.understanding.search.view`; jobs are submitted and followed
with ``follow`` (the Understand tab's: a progress bar while the job waits or runs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator

import gradio as gr

from webui.common import error, owner_of

if TYPE_CHECKING:
    from modules.app_context import AppContext

Follow = Callable[..., Iterator[tuple[str, str, Any]]]


@dataclass
class SearchSection:
    """The sub-tab's components other tabs wire to, and its handlers (the tests call them as the page does)."""

    model: Any
    top_k: Any
    weights: Any
    status: Any
    gallery: Any
    note: Any
    hits: Any                  # gr.State: the gallery paths shown, in order
    search_image: Callable[..., Iterator[tuple[Any, ...]]]
    search_text: Callable[..., Iterator[tuple[Any, ...]]]
    search_path: Callable[..., Iterator[tuple[Any, ...]]]
    index_all: Callable[..., Iterator[tuple[Any, ...]]]


def _load(path: Any) -> Any:
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        return image.copy()


def build_search_section(ctx: "AppContext", image: Any, follow: Follow) -> SearchSection:
    """The Search sub-tab's contents (inside its ``gr.Tab``); ``image`` is the Understand tab's image."""
    from modules.understanding.search import view

    with gr.Row():
        model = gr.Dropdown(view.model_choices(ctx), value=view.DEFAULT_CHOICE, label="Model",
                            elem_id="understand_search_model", scale=3,
                            info="an image classifier searches by image; clip:<folder> (models/CLIP) also by text")
        top_k = gr.Slider(1, 200, value=24, step=1, label="Results", elem_id="understand_search_top_k", scale=2)
    weights = gr.Textbox(label="Match weights (classifiers with label groups)", lines=1,
                         elem_id="understand_search_weights",
                         placeholder="empty: the model's own (shapes classifier: shape=1, colour=1, background=0.25, "
                                     "position=0.25, size=0.25); e.g. background=1 to match the scene too")
    text = gr.Textbox(label="Text (CLIP-like models)", lines=1, elem_id="understand_search_text",
                      placeholder="a red circle on a blue background")
    with gr.Row():
        by_image = gr.Button("Search by the image at the left", variant="primary", elem_id="understand_search_by_image")
        by_text = gr.Button("Search by text", elem_id="understand_search_by_text")
        similar = gr.Button("Find similar to the selected result", elem_id="understand_search_similar")
        index_all = gr.Button("Index the gallery", elem_id="understand_search_index")
    status = gr.HTML("", elem_id="understand_search_status")
    note = gr.Markdown(view.index_summary(ctx), elem_id="understand_search_note")
    gallery = gr.Gallery(label="Most similar first (score · file)", columns=6, height=420, format="jpeg",
                         allow_preview=True, object_fit="contain", interactive=False, fit_columns=False,
                         elem_id="understand_search_gallery")
    hits, picked = gr.State([]), gr.State("")

    def run(build: Callable[[], Any], request: gr.Request | None) -> Iterator[tuple[Any, ...]]:
        for bar, _, job in follow(ctx, build, owner_of(request)):
            if job is None or job.result is None:
                yield bar, gr.skip(), gr.skip(), gr.skip()
                continue
            items = view.hit_items(ctx, job.result)
            yield (bar, [(_load(thumb), caption) for thumb, caption, _ in items], [p for _, _, p in items],
                   view.result_note(job.result))

    def search_image(img: Any, model_v: str, top_k_v: float, weights_v: str = "",
                     request: gr.Request | None = None) -> Iterator[tuple[Any, ...]]:
        yield from run(lambda: view.search_request("image", image=img, model=model_v, top_k=top_k_v,
                                                   weights=weights_v), request)

    def search_text(text_v: str, model_v: str, top_k_v: float, weights_v: str = "",
                    request: gr.Request | None = None) -> Iterator[tuple[Any, ...]]:
        yield from run(lambda: view.search_request("text", text=text_v, model=model_v, top_k=top_k_v,
                                                   weights=weights_v), request)

    def search_path(path: str, model_v: str, top_k_v: float, weights_v: str = "",
                    request: gr.Request | None = None) -> Iterator[tuple[Any, ...]]:
        yield from run(lambda: view.search_request("path", path=path, model=model_v, top_k=top_k_v,
                                                   weights=weights_v), request)

    def index_all_(model_v: str, request: gr.Request | None = None) -> Iterator[tuple[Any, ...]]:
        from webui.progress import bar_html

        for bar, _, job in follow(ctx, lambda: view.index_request(model_v), owner_of(request)):
            if job is not None and job.result is not None:
                yield bar_html("done", 1.0, job.result.text(), job.id), view.index_summary(ctx)
            else:
                yield bar, gr.skip()

    def pick(evt: gr.SelectData, shown: list[str]) -> str:
        index = evt.index if isinstance(evt.index, int) else -1
        return shown[index] if 0 <= index < len(shown) else ""

    outputs = [status, gallery, hits, note]
    common = {"api_visibility": "private", "show_progress": "hidden"}
    by_image.click(search_image, inputs=[image, model, top_k, weights], outputs=outputs, **common)
    by_text.click(search_text, inputs=[text, model, top_k, weights], outputs=outputs, **common)
    text.submit(search_text, inputs=[text, model, top_k, weights], outputs=outputs, **common)
    similar.click(search_path, inputs=[picked, model, top_k, weights], outputs=outputs, **common)
    index_all.click(index_all_, inputs=[model], outputs=[status, note], **common)
    gallery.select(pick, inputs=[hits], outputs=[picked], api_visibility="private")
    return SearchSection(model, top_k, weights, status, gallery, note, hits, search_image, search_text, search_path,
                         index_all_)


def wire_find_similar(tabs: Any, understand: Any, history: Any) -> None:
    """History's Find similar: the Understand tab's Search sub-tab, with the images most like the one shown."""
    section: SearchSection | None = getattr(understand, "search", None)
    button = getattr(history, "find_similar", None)
    if section is None or button is None:
        return

    def find(relative: str, model_v: str, top_k_v: float, weights_v: str,
             request: gr.Request | None = None) -> Iterator[tuple[Any, ...]]:
        if not relative:
            raise error("Pick an image in History first.")
        switch: tuple[Any, Any] = (gr.Tabs(selected="understand_search"), gr.Tabs(selected="understand"))
        for values in section.search_path(relative, model_v, top_k_v, weights_v, request):
            yield (*values, *switch)
            switch = (gr.skip(), gr.skip())

    button.click(find, inputs=[history.selected, section.model, section.top_k, section.weights],
                 outputs=[section.status, section.gallery, section.hits, section.note, understand.tabs, tabs],
                 api_visibility="private", show_progress="hidden")

