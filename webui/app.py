"""The Gradio studio: a checkpoint picker on top, one tab per capability below (txt2img, img2img with
inpaint/outpaint, Extras with PNG Info, History, Models, Settings), and the "send to" plumbing
between them.

The UI is thin: it builds typed requests, submits them to the job queue through
``modules.generation.prechecks`` and renders what comes back. Per-field defaults come from
``<data dir>/ui-config.json`` (A1111's file and key format), read once here.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import gradio as gr

from webui.common import active_title, checkpoint_titles, error, status_html
from webui.extensions_tab import build_extensions_tab
from webui.extras_tab import build_extras_tab
from webui.history_tab import build_history_tab
from webui.img2img_tab import build_img2img_tab
from webui.look import ICON_ONLY_CLASS, icon
from webui.models_tab import build_models_tab
from webui.page_channel import build_page_channel
from webui.params import Fields, paste_updates
from webui.quicksettings import build_quicksettings
from webui.settings_tab import build_settings_tab
from webui.tools import wire_page_load
from webui.train_dreambooth import build_dreambooth_tab
from webui.train_tab import build_train_tab
from webui.txt2img_tab import build_txt2img_tab
from webui.understand_search import wire_find_similar
from webui.understand_tab import build_understand_tab, wire_send_to_understand
from webui.ui_config import UiDefaults

if TYPE_CHECKING:
    from modules.app_context import AppContext
    from webui.img2img_tab import Img2ImgTab
    from webui.results import Results

#: what an image "send to" copies (A1111: prompt, negative prompt, steps; seed and size per settings)
IMAGE_SEND_FIELDS = ("prompt", "negative_prompt", "steps", "sampler_name", "scheduler", "cfg_scale", "seed",
                     "subseed", "subseed_strength", "width", "height")


def _load_image(path: Any) -> Any:
    from PIL import Image

    if path is None:
        return None
    if isinstance(path, Image.Image):
        return path
    with Image.open(path) as image:
        image.load()
        return image.copy()


def _selected(gallery: Any, index: int) -> Any:
    """The selected (or first) image of a gallery value (a list of (filepath, caption))."""
    if not gallery:
        return None
    item = gallery[index] if 0 <= (index or 0) < len(gallery) else gallery[0]
    return _load_image(item[0] if isinstance(item, (tuple, list)) else item)


def _model_status(ctx: "AppContext") -> tuple[str, bool]:
    """(the status line next to the checkpoint picker, whether a model load is under way)."""
    from pathlib import Path

    from modules.jobs.model import JobState

    loads = [job for job in ctx.queue.list_jobs(limit=20) if job.kind == "load_model"]
    pending = next((job for job in loads if not job.state.finished), None)
    if pending is not None:
        name = Path(getattr(pending.request, "checkpoint", "") or "checkpoint").name
        return status_html(f"Loading {name}…", "info"), True
    active = ctx.models.active
    if active is None:
        failed = loads[0] if loads and loads[0].state is JobState.FAILED else None
        if failed is not None:
            return status_html(f"No model loaded: {failed.error or 'the last load failed'}", "error"), False
        return status_html("No model loaded yet: pick a checkpoint.", "warn"), False
    return status_html(f"{active.model.family.label} · loaded in {active.load_seconds:.1f} s"), False


def _studio_notice(ctx: "AppContext") -> str:
    """A warning above the tabs when something at start-up needs the user's attention (a damaged
    job file replaced by what could be saved of it), else nothing."""
    notice = ctx.store.repair_notice
    return status_html(ctx.paths.scrub(notice), "warn") if notice else ""


def build_ui(ctx: "AppContext") -> gr.Blocks:
    ui = UiDefaults(ctx.paths.data_dir / "ui-config.json")
    with gr.Blocks(title="Atelier", analytics_enabled=False) as demo:
        with gr.Row(equal_height=True):
            checkpoint = gr.Dropdown(checkpoint_titles(ctx), value=active_title(ctx), label="Stable Diffusion checkpoint",
                                     elem_id="setting_sd_model_checkpoint", scale=4)
            refresh = gr.Button("", icon=icon("refresh"), scale=0, min_width=48,
                                elem_id="refresh_sd_model_checkpoint", elem_classes=[ICON_ONLY_CLASS])
            quick = build_quicksettings(ctx)  # the quicksettings_list setting: VAE, clip skip (webui/quicksettings.py)
            model_status = gr.HTML("", elem_id="model_status")
            loading = gr.Timer(1.0, active=False)  # follows a model load until it is done
        gr.HTML(lambda: _studio_notice(ctx), elem_id="studio_notice")  # evaluated at every page load
        with gr.Tabs(elem_id="tabs") as tabs:
            with gr.Tab("txt2img", id="txt2img"):
                txt2img = build_txt2img_tab(ctx, ui)
            with gr.Tab("img2img", id="img2img"):
                img2img = build_img2img_tab(ctx, ui)
            with gr.Tab("Extras", id="extras"):
                extras = build_extras_tab(ctx, ui)
            with gr.Tab("Understand", id="understand"):
                understand = build_understand_tab(ctx)
            with gr.Tab("History", id="history") as history_tab:
                history = build_history_tab(ctx)
            with gr.Tab("Models", id="models") as models_tab:
                models = build_models_tab(ctx)
            with gr.Tab("Train", id="train"):
                build_train_tab(ctx, sections=[functools.partial(build_dreambooth_tab, ctx)])
            _build_extension_tabs(ctx)
            with gr.Tab("Settings", id="settings"):
                settings = build_settings_tab(ctx)
            with gr.Tab("Extensions", id="extensions"):
                build_extensions_tab(ctx)
        build_page_channel(ctx)  # the page scripts' questions (token counts, page options): webui/js/*.js
        _wire_header(ctx, demo, checkpoint, refresh, model_status, loading, models.picker)
        wire_page_load(ctx, demo, txt2img, img2img, quick, settings)  # theme, settings, re-attach to jobs
        _wire_send_to(ctx, tabs, txt2img.results, img2img, extras)
        _wire_send_to(ctx, tabs, img2img.results, img2img, extras)
        _wire_infotext_sends(ctx, tabs, txt2img.fields, img2img, extras, history)
        wire_send_to_understand(tabs, understand, (txt2img.results, img2img.results), history)
        wire_find_similar(tabs, understand, history)  # History → Find similar: Understand → Search
        history_tab.select(history.show, inputs=history.show_inputs, outputs=history.show_outputs,
                           api_visibility="private")
        models_tab.select(models.show, outputs=[models.picker, models.table], api_visibility="private")
    ui.save()
    return demo


def _build_extension_tabs(ctx: "AppContext") -> None:
    """The top-level tabs of approved extensions (``ui_tabs``); one whose build raises is hidden and reported."""
    from modules.scripts.ui_hooks import build_tab_safely, extension_tabs

    if ctx.scripts is None:
        return
    for index, tab in enumerate(extension_tabs(ctx.scripts)):
        with gr.Tab(tab.title, id=f"extension_tab_{index}") as page:
            if not build_tab_safely(ctx.scripts, tab):
                page.visible = False


def _wire_header(ctx: "AppContext", demo: gr.Blocks, checkpoint: Any, refresh: Any, model_status: Any,
                 loading: Any, models_picker: Any) -> None:
    def switch(title: str) -> str:
        from modules.models.load_job import switch_model
        from modules.jobs.model import JobState

        if not title or title == active_title(ctx):
            return _model_status(ctx)[0]
        try:
            job = switch_model(ctx, title, owner="webui")
        except Exception as exc:  # noqa: BLE001 - shown to the user
            raise error(exc) from None
        job.done.wait()
        if job.state is not JobState.SUCCEEDED:
            raise error(job.error or "model switch failed")
        return _model_status(ctx)[0]

    def choices() -> tuple[Any, str, Any]:
        status, busy = _model_status(ctx)
        return gr.update(choices=checkpoint_titles(ctx), value=active_title(ctx)), status, gr.Timer(active=busy)

    def do_refresh() -> tuple[Any, str, Any]:
        ctx.catalog.refresh()
        return choices()

    outputs = [checkpoint, model_status, loading]
    checkpoint.input(switch, inputs=[checkpoint], outputs=[model_status], api_visibility="private",
                     concurrency_limit=None)
    refresh.click(do_refresh, outputs=outputs, queue=False, api_visibility="private")
    models_picker.change(choices, outputs=outputs, queue=False, api_visibility="private", show_progress="hidden")
    demo.load(choices, outputs=outputs, queue=False, api_visibility="private")
    loading.tick(choices, outputs=outputs, queue=False, api_visibility="private", show_progress="hidden")


def _image_paste(ctx: "AppContext", fields: Fields, text: str) -> list[Any]:
    settings = ctx.settings.current
    updates, _ = paste_updates(fields, text, send_seed=settings.send_seed, send_size=settings.send_size,
                               only=IMAGE_SEND_FIELDS)
    return updates


def _wire_send_to(ctx: "AppContext", tabs: Any, results: "Results", img2img: "Img2ImgTab", extras: Any) -> None:
    """img2img / inpaint / extras under a result gallery: the selected image (and its parameters) to another tab."""
    fields = img2img.fields

    def to_img2img(gallery: Any, index: int, texts: list[str]) -> list[Any]:
        image = _selected(gallery, index)
        if image is None:
            raise error("Generate an image first, then send it.")
        text = texts[index] if 0 <= (index or 0) < len(texts) else (texts[0] if texts else "")
        return [image, "img2img", gr.Tabs(selected="img2img"), gr.Tabs(selected="img2img"),
                *_image_paste(ctx, fields, text)]

    def to_inpaint(gallery: Any, index: int, texts: list[str]) -> list[Any]:
        image = _selected(gallery, index)
        if image is None:
            raise error("Generate an image first, then send it.")
        text = texts[index] if 0 <= (index or 0) < len(texts) else (texts[0] if texts else "")
        editor = {"background": image, "layers": [], "composite": image}
        return [editor, "inpaint", gr.Tabs(selected="inpaint"), gr.Tabs(selected="img2img"),
                *_image_paste(ctx, fields, text)]

    def to_extras(gallery: Any, index: int) -> list[Any]:
        image = _selected(gallery, index)
        if image is None:
            raise error("Generate an image first, then send it.")
        return [image, gr.Tabs(selected="upscale"), gr.Tabs(selected="extras")]

    inputs = [results.gallery, results.selected, results.texts]
    tail = [img2img.mode, img2img.tabs, tabs, *fields.inputs]
    results.send_img2img.click(to_img2img, inputs=inputs, outputs=[img2img.image, *tail], api_visibility="private")
    results.send_inpaint.click(to_inpaint, inputs=inputs, outputs=[img2img.editor, *tail], api_visibility="private")
    results.send_extras.click(to_extras, inputs=inputs[:2], outputs=[extras.image, extras.tabs, tabs],
                              api_visibility="private")


def _wire_infotext_sends(ctx: "AppContext", tabs: Any, txt2img_fields: Fields, img2img: "Img2ImgTab", extras: Any,
                         history: Any) -> None:
    """PNG Info and History: the whole infotext to txt2img, or the image and its infotext to img2img."""

    def full_paste(fields: Fields, text: str) -> list[Any]:
        settings = ctx.settings.current
        if not (text or "").strip():
            raise error("No generation parameters to send: pick an image that has them.")
        updates, _ = paste_updates(fields, text, send_seed=settings.send_seed, send_size=settings.send_size)
        return updates

    def to_txt2img(text: str) -> list[Any]:
        return [gr.Tabs(selected="txt2img"), *full_paste(txt2img_fields, text)]

    def to_img2img(image: Any, text: str) -> list[Any]:
        picture = _load_image(image)
        if picture is None:
            raise error("Pick an image first.")
        return [picture, "img2img", gr.Tabs(selected="img2img"), gr.Tabs(selected="img2img"),
                *(full_paste(img2img.fields, text) if (text or "").strip() else [gr.skip()] * len(img2img.fields.names))]

    txt_outputs = [tabs, *txt2img_fields.inputs]
    img_outputs = [img2img.image, img2img.mode, img2img.tabs, tabs, *img2img.fields.inputs]
    for send_txt, send_img, image, text in ((extras.send_txt2img, extras.send_img2img, extras.png_file, extras.png_text),
                                             (history.send_txt2img, history.send_img2img, history.image,
                                              history.infotext)):
        send_txt.click(to_txt2img, inputs=[text], outputs=txt_outputs, api_visibility="private")
        send_img.click(to_img2img, inputs=[image, text], outputs=img_outputs, api_visibility="private")
