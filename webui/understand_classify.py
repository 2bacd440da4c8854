"""The Understand tab's Classify sub-tab: the image at the left (or several uploaded here) classified by a model of
``models/classifier`` into a label table; the INT8 agreement check; fine-tuning on a labelled folder.

Thin: requests come from :mod:`modules.understanding.classify.page`, go through ``submit_job`` and are followed
with the Understand tab's progress bar (``follow``, passed in).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator

import gradio as gr

from webui.common import owner_of, status_html
from webui.look import ICON_ONLY_CLASS, icon

if TYPE_CHECKING:
    from modules.app_context import AppContext


@dataclass
class ClassifyTab:
    """The handlers (the tests call them as the page's events do)."""

    classify: Callable[..., Iterator[tuple[Any, ...]]]
    int8_check: Callable[..., Iterator[tuple[Any, ...]]]
    finetune: Callable[..., Iterator[tuple[Any, ...]]]
    refresh: Callable[..., tuple[Any, ...]]


def build_classify_tab(ctx: "AppContext", image: Any, follow: Callable[..., Iterator[tuple[str, str, Any]]]
                       ) -> ClassifyTab:
    """The sub-tab, built inside the Understand tab's ``gr.Tabs`` (``image``: the tab's shared image)."""
    from modules.understanding.classify import page

    models = page.model_choices(ctx)
    first = models[0] if models else None
    with gr.Tab("Classify", id="understand_classify"):
        files = gr.File(label="More images (optional; classified after the image at the left)", file_count="multiple",
                        file_types=["image"], height=120, elem_id="understand_classify_files")
        with gr.Row(equal_height=True):
            model = gr.Dropdown(models, value=first, label="Classifier (models/classifier)", scale=4,
                                elem_id="understand_classify_model")
            refresh = gr.Button("", icon=icon("refresh"), size="sm", scale=0, min_width=40,
                                elem_id="understand_classify_refresh", elem_classes=[ICON_ONLY_CLASS])
        with gr.Row():
            precision = gr.Radio(["float", "int8"], value="float", label="Precision", scale=1,
                                 elem_id="understand_classify_precision")
            top_k = gr.Slider(1, 20, value=5, step=1, label="Top k (per group for grouped labels)", scale=2,
                              elem_id="understand_classify_top_k")
        int8_info = gr.Markdown(page.int8_note(ctx, first, hash_now=False) if first else "",
                                elem_id="understand_classify_int8_note")
        run = gr.Button("Classify", variant="primary", elem_id="understand_classify_run")
        status = gr.HTML("", elem_id="understand_classify_status")
        table = gr.Dataframe(headers=page.TABLE_COLUMNS, value=None, interactive=False, wrap=True,
                             elem_id="understand_classify_table")
        note = gr.Markdown("", elem_id="understand_classify_note")
        with gr.Accordion("INT8 (ONNX): check agreement with float on your own images", open=False):
            with gr.Row():
                q_source = gr.Radio(["gallery", "folder"], value="gallery", label="Images",
                                    elem_id="understand_int8_source")
                q_folder = gr.Textbox(label="Folder (under the data dir or an --allowed-dir)", lines=1, scale=2,
                                      elem_id="understand_int8_folder")
            with gr.Row():
                q_threshold = gr.Slider(50, 100, value=97, step=0.5, label="Agreement needed (%)",
                                        elem_id="understand_int8_threshold")
                q_limit = gr.Number(200, label="At most (images)", precision=0, minimum=8, maximum=1000,
                                    elem_id="understand_int8_limit")
            q_run = gr.Button("Export, quantize and check", elem_id="understand_int8_run")
            q_status = gr.HTML("", elem_id="understand_int8_status")
        with gr.Accordion("Fine-tune on a labelled folder (one sub-folder per label)", open=False):
            with gr.Row():
                f_folder = gr.Textbox(label="Labelled folder", lines=1, scale=2, elem_id="understand_finetune_folder")
                f_name = gr.Textbox(label="New classifier's name", lines=1, elem_id="understand_finetune_name")
                f_base = gr.Dropdown(models, value=first, label="Start from", elem_id="understand_finetune_base")
            with gr.Row():
                f_epochs = gr.Number(3, label="Epochs", precision=0, minimum=1, maximum=100,
                                     elem_id="understand_finetune_epochs")
                f_lr = gr.Number(1e-4, label="Learning rate", minimum=0, elem_id="understand_finetune_lr")
                f_batch = gr.Number(8, label="Batch", precision=0, minimum=1, maximum=128,
                                    elem_id="understand_finetune_batch")
                f_overwrite = gr.Checkbox(False, label="Replace a classifier of that name",
                                          elem_id="understand_finetune_overwrite")
            f_run = gr.Button("Fine-tune", elem_id="understand_finetune_run")
            f_status = gr.HTML("", elem_id="understand_finetune_status")

    def refresh_(chosen: str | None = None) -> tuple[Any, ...]:
        names = page.model_choices(ctx)
        value = chosen if chosen in names else (names[0] if names else None)
        return (gr.update(choices=names, value=value), gr.update(choices=names),
                page.int8_note(ctx, value) if value else "")

    def classify(img: Any, more: Any, name: str, prec: str, k: float, request: gr.Request | None = None
                 ) -> Iterator[tuple[Any, ...]]:
        build = lambda: page.classify_request(img, more, name, prec, k)  # noqa: E731
        for bar, _, job in follow(ctx, build, owner_of(request)):
            if job is not None and job.result is not None:
                notes = " ".join(job.result.notes)
                yield bar, page.table_rows(job.result, page.upload_names(img, more)), \
                    f"{job.result.model_id} · {job.result.precision}" + (f" · {notes}" if notes else "")
            else:
                yield bar, gr.skip(), gr.skip()

    def int8_check(name: str, source: str, folder: str, threshold: float, limit: float,
                   request: gr.Request | None = None) -> Iterator[tuple[Any, ...]]:
        build = lambda: page.int8_request(name, source, folder, threshold, limit)  # noqa: E731
        for bar, _, job in follow(ctx, build, owner_of(request)):
            if job is not None and job.result is not None:
                summary = job.result.summary()
                yield status_html(summary, "ok" if job.result.passed else "warn"), summary
            else:
                yield bar, gr.skip()

    def finetune(folder: str, new: str, base: str, epochs: float, lr: float, batch: float, overwrite: bool,
                 request: gr.Request | None = None) -> Iterator[tuple[Any, ...]]:
        build = lambda: page.finetune_request(folder, new, base, epochs, lr, batch, overwrite)  # noqa: E731
        for bar, _, job in follow(ctx, build, owner_of(request)):
            if job is not None and job.result is not None:
                text = page.finetune_text(job.result)
                yield (status_html(text, "warn" if job.result.get("note") else "ok"),
                       *refresh_(job.result["name"] if not job.result.get("note") else None)[:2])
            else:
                yield bar, gr.skip(), gr.skip()

    refresh.click(refresh_, inputs=[model], outputs=[model, f_base, int8_info], api_visibility="private")
    model.change(lambda name: page.int8_note(ctx, name) if name else "", inputs=[model], outputs=[int8_info],
                 api_visibility="private", show_progress="hidden")
    run.click(classify, inputs=[image, files, model, precision, top_k], outputs=[status, table, note],
              api_visibility="private", show_progress="hidden")
    q_run.click(int8_check, inputs=[model, q_source, q_folder, q_threshold, q_limit], outputs=[q_status, int8_info],
                api_visibility="private", show_progress="hidden")
    f_run.click(finetune, inputs=[f_folder, f_name, f_base, f_epochs, f_lr, f_batch, f_overwrite],
                outputs=[f_status, model, f_base], api_visibility="private", show_progress="hidden")
    return ClassifyTab(classify, int8_check, finetune, refresh_)
