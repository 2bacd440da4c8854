"""The Extras tab: Upscale (A1111's single image, "Batch Process" of many uploads and "Batch from Directory",
each an ``extras`` job on the queue: :mod:`modules.images.extras_job`) and PNG Info (every infotext key of an
image, with "send to" buttons wired in :mod:`webui.app`)."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

import gradio as gr

from webui.common import owner_of, readable, status_html
from webui.look import RESULT_CLASS
from webui.progress import run_and_follow

if TYPE_CHECKING:
    from modules.app_context import AppContext
    from webui.ui_config import UiDefaults

TAB = "extras"


@dataclass
class ExtrasTab:
    tabs: Any
    image: Any
    png_file: Any
    png_text: Any
    send_txt2img: Any
    send_img2img: Any


def infotext_items(text: str) -> list[tuple[str, str]]:
    """The keys an infotext really contains, in order (no parser defaults; "Size-1"/"Size-2" as "Size")."""
    from modules.images.infotext import parse_infotext

    items: list[tuple[str, str]] = []
    for key, value in parse_infotext(text).items():
        base = key[:-2] if key[-2:] in ("-1", "-2") else key
        if key not in ("Prompt", "Negative prompt") and f"{base}:" not in text:
            continue  # a default the parser filled in
        if key.endswith("-2"):
            continue
        if key.endswith("-1"):
            items.append((base, text.split(f"{base}:", 1)[1].split(",", 1)[0].strip()))
            continue
        items.append((key, str(value)))
    first = [item for item in items if item[0] in ("Prompt", "Negative prompt")]
    return first + [item for item in items if item[0] not in ("Prompt", "Negative prompt")]


def pnginfo_html(text: str, items: dict[str, str]) -> str:
    """Every key of an infotext (and the image's other text chunks) as a small HTML table."""
    if not text and not items:
        return status_html("This image has no generation parameters.", "warn")
    rows = [*(infotext_items(text) if text else []), *items.items()]
    body = "".join(f"<tr><th style='text-align:left;padding:2px 1em 2px 0;vertical-align:top'>{html.escape(k)}</th>"
                   f"<td style='padding:2px 0'>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table class='atelier-pnginfo' style='width:100%'>{body}</table>"


def build_extras_tab(ctx: "AppContext", ui: "UiDefaults") -> ExtrasTab:
    from modules.images.upscale import UPSCALERS

    names = [*UPSCALERS, *(m.name for m in ctx.upscalers.models())]
    with gr.Tabs(elem_id="extras_tabs") as tabs:
        with gr.Tab("Upscale", id="upscale"):
            with gr.Row(equal_height=False):
                with gr.Column():
                    source_mode = gr.Radio(["single", "batch", "directory"], value="single", visible=False,
                                           label="Source", elem_id="extras_source_mode")
                    with gr.Tabs(elem_id="extras_source_tabs"):
                        with gr.Tab("Single Image", id="single", elem_id="extras_single_tab") as tab_single:
                            image = gr.Image(label="Source", type="pil", image_mode=None,
                                             sources=["upload", "clipboard"], elem_id="extras_image", height=320)
                        with gr.Tab("Batch Process", id="batch", elem_id="extras_batch_process_tab") as tab_batch:
                            batch_files = gr.File(label="Images", file_count="multiple", file_types=["image"],
                                                  type="filepath", elem_id="extras_image_batch", height=160)
                        with gr.Tab("Batch from Directory", id="directory",
                                    elem_id="extras_batch_directory_tab") as tab_dir:
                            gr.Markdown("Folders on the server, under the studio's data folder or one allowed "
                                        "with `--allowed-dir`.")
                            input_dir = ui.make(gr.Textbox, TAB, "Input directory", value="",
                                                elem_id="extras_batch_input_dir")
                            output_dir = ui.make(gr.Textbox, TAB, "Output directory", value="",
                                                 elem_id="extras_batch_output_dir",
                                                 placeholder="empty: outputs/extras-images")
                            show_results = ui.make(gr.Checkbox, TAB, "Show result images", value=True,
                                                   elem_id="extras_show_extras_results")
                    resize_mode = ui.make(gr.Radio, TAB, "Resize", choices=["Scale by", "Scale to"], value="Scale by",
                                          type="index", elem_id="extras_resize_mode")
                    with gr.Row():
                        scale = ui.make(gr.Slider, TAB, "Scale by", minimum=1, maximum=8, value=2.0, step=0.05,
                                        elem_id="extras_upscaling_resize")
                        width = ui.make(gr.Number, TAB, "Width", value=512, precision=0, elem_id="extras_resize_w")
                        height = ui.make(gr.Number, TAB, "Height", value=512, precision=0, elem_id="extras_resize_h")
                        crop = ui.make(gr.Checkbox, TAB, "Crop to fit", value=True, elem_id="extras_crop")
                    with gr.Row():
                        upscaler_1 = ui.make(gr.Dropdown, TAB, "Upscaler 1", choices=names, value="Lanczos",
                                             elem_id="extras_upscaler_1")
                        upscaler_2 = ui.make(gr.Dropdown, TAB, "Upscaler 2", choices=names, value="None",
                                             elem_id="extras_upscaler_2")
                        visibility = ui.make(gr.Slider, TAB, "Upscaler 2 visibility", minimum=0, maximum=1,
                                             value=0.0, step=0.01, elem_id="extras_upscaler_2_visibility")
                    run = gr.Button("Upscale", variant="primary", elem_id="extras_generate")
                    run_batch = gr.Button("Upscale all", variant="primary", elem_id="extras_batch_generate",
                                          visible=False)
                    interrupt = gr.Button("Interrupt", elem_id="extras_interrupt", size="sm")
                with gr.Column():
                    result = gr.Image(label="Result", type="pil", interactive=False, elem_id="extras_result",
                                      height=320, format="png", elem_classes=[RESULT_CLASS])
                    batch_gallery = gr.Gallery(label="Results", elem_id="extras_batch_gallery", columns=4,
                                               height=320, format="png", visible=False, interactive=False)
                    info = gr.HTML("", elem_id="extras_info")
        with gr.Tab("PNG Info", id="pnginfo"):
            with gr.Row(equal_height=False):
                with gr.Column():
                    png_file = gr.Image(label="Image with generation parameters", type="filepath", image_mode=None,
                                        sources=["upload", "clipboard"], elem_id="pnginfo_image", height=320)
                with gr.Column():
                    png_html = gr.HTML("", elem_id="pnginfo_html")
                    png_text = gr.Textbox(label="Infotext", lines=5, interactive=False, elem_id="pnginfo_generation_info",
                                          buttons=["copy"])
                    with gr.Row():
                        send_txt2img = gr.Button("Send to txt2img", elem_id="pnginfo_send_to_txt2img")
                        send_img2img = gr.Button("Send to img2img", elem_id="pnginfo_send_to_img2img")

    def upscale(source: Any, mode: int, by: float, w: float, h: float, crop_v: bool, first: str, second: str,
                second_vis: float, request: gr.Request) -> Iterator[tuple[Any, str]]:
        """Queue an ``extras`` job (upscalers run on the device) and follow it; the result is saved."""
        from modules.images.codec import encode_png_base64, read_infotext
        from modules.images.extras_job import ExtrasRequest

        if source is None:
            yield gr.skip(), status_html("Upload an image first.", "warn")
            return
        job_request = ExtrasRequest(
            images=[encode_png_base64(source, read_infotext(source))], names=["the image"], save_images=True,
            resize_mode=int(mode or 0), upscaling_resize=float(by), upscaling_resize_w=int(w or 0),
            upscaling_resize_h=int(h or 0), upscaling_crop=bool(crop_v), upscaler_1=first or "None",
            upscaler_2=second or "None", extras_upscaler_2_visibility=float(second_vis or 0))
        for job, status in run_and_follow(ctx, job_request, owner_of(request)):
            if job is None or status:
                yield gr.skip(), status
                continue
            result = job.result
            if not result.images:
                yield gr.skip(), status_html("Stopped before the image was upscaled.", "warn")
                return
            out, saved = result.images[0], result.paths[0]
            where = f" · saved to {ctx.paths.shown(saved)}" if saved else ""
            yield out, status_html(f"{out.width}x{out.height} · {result.infotext or 'unchanged'}{where}", "ok")

    run.click(upscale, inputs=[image, resize_mode, scale, width, height, crop, upscaler_1, upscaler_2, visibility],
              outputs=[result, info], api_name="extras", concurrency_limit=2)

    def read_png(path: str | None) -> tuple[str, str]:
        from PIL import Image, UnidentifiedImageError

        from modules.images.codec import read_infotext

        if not path:
            return "", ""
        try:
            with Image.open(path) as img:
                text = read_infotext(img) or ""
                items = {k: v for k, v in img.info.items() if isinstance(v, str) and k != "parameters"}
        except (OSError, UnidentifiedImageError) as exc:
            return status_html(f"Cannot read that image: {readable(exc)}", "error"), ""
        return pnginfo_html(text, items), text

    for tab, value in ((tab_single, "single"), (tab_batch, "batch"), (tab_dir, "directory")):
        tab.select(lambda v=value: (v, gr.Button(visible=v == "single"), gr.Button(visible=v != "single"),
                                    gr.Image(visible=v == "single"), gr.Gallery(visible=v != "single")),
                   outputs=[source_mode, run, run_batch, result, batch_gallery], queue=False,
                   show_progress="hidden", api_visibility="private")

    def upscale_batch(mode: str, files: Any, in_dir: str, out_dir: str, show: bool, how: int, by: float, w: float,
                      h: float, crop_v: bool, first: str, second: str, second_vis: float,
                      request: gr.Request) -> Iterator[tuple[Any, str]]:
        """Queue one ``extras`` job for many uploads or a server folder; follow it; show the results and the
        summary (done, failed and why)."""
        from webui.extras_batch import batch_extras_request, batch_status

        try:
            job_request = batch_extras_request(
                mode, files, in_dir, out_dir, resize_mode=int(how or 0), upscaling_resize=float(by),
                upscaling_resize_w=int(w or 0), upscaling_resize_h=int(h or 0), upscaling_crop=bool(crop_v),
                upscaler_1=first or "None", upscaler_2=second or "None",
                extras_upscaler_2_visibility=float(second_vis or 0))
        except ValueError as exc:
            yield gr.skip(), status_html(readable(exc), "warn")
            return
        for job, status in run_and_follow(ctx, job_request, owner_of(request)):
            if job is None or status:
                yield gr.skip(), status
                continue
            shown = [(image, name) for image, name in zip(job.result.images, job.result.names)] if show else []
            yield shown, batch_status(ctx, job.result)

    run_batch.click(upscale_batch, inputs=[source_mode, batch_files, input_dir, output_dir, show_results,
                                           resize_mode, scale, width, height, crop, upscaler_1, upscaler_2,
                                           visibility],
                    outputs=[batch_gallery, info], api_name="extras_batch", concurrency_limit=2)
    def stop(request: gr.Request) -> str:
        return _interrupt(ctx, request)

    interrupt.click(stop, inputs=None, outputs=[info], queue=False, show_progress="hidden",
                    api_visibility="private")

    png_file.change(read_png, inputs=[png_file], outputs=[png_html, png_text], api_name="pnginfo",
                    show_progress="hidden")
    return ExtrasTab(tabs, image, png_file, png_text, send_txt2img, send_img2img)


def _interrupt(ctx: "AppContext", request: gr.Request) -> str:
    """Stop this user's running job (an Extras batch keeps what it upscaled so far)."""
    job = ctx.queue.interrupt(owner=owner_of(request))
    return status_html("Interrupting…" if job is not None else "Nothing to stop.", "warn" if job is None else "ok")
