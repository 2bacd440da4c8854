"""The img2img tab with its sub-tabs img2img / Sketch / Inpaint (mask painted on a canvas or uploaded) /
Inpaint sketch / Outpaint / Batch; builds an :class:`Img2ImgRequest` (an :class:`Img2ImgBatchRequest` for
Batch) and submits it through :func:`modules.jobs.submit.submit_job` (Gradio API name ``/img2img``). The
extra modes, "copy image to", Resize by and soft inpainting: :mod:`webui.img2img_modes`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator

import gradio as gr

from webui.look import icon
from webui.params import (Fields, PromptRow, SeedRow, build_advanced, build_batch_and_cfg, build_prompt_row,
                          build_sampling, build_seed, build_size, request_values)
from webui.img2img_modes import (COPY_TARGETS, SKETCH_MODES, ModeWidgets, batch_request, build_resize,
                                  build_soft_inpainting, finish_request_data, wire_copy_buttons)
from webui.results import Results, build_results, run_job
from webui.tools import wire_tools

if TYPE_CHECKING:
    from modules.app_context import AppContext
    from webui.ui_config import UiDefaults

TAB = "img2img"
RESIZE_MODES = ["Just resize", "Crop and resize", "Resize and fill", "Just resize (latent upscale)"]
MASKED_CONTENT = ["fill", "original", "latent noise", "latent nothing"]


@dataclass
class Img2ImgTab:
    fields: Fields
    row: PromptRow
    seed: SeedRow
    results: Results
    tabs: Any
    mode: Any
    image: Any
    editor: Any
    outpaint_image: Any
    modes: Any = None  # webui.img2img_modes.ModeWidgets: sketch canvases, Batch, Resize by


def _build_inpaint_options(ui: "UiDefaults", fields: Fields) -> None:
    with gr.Row():
        fields.add("mask_blur", ui.make(gr.Slider, TAB, "Mask blur", minimum=0, maximum=64, value=4, step=1,
                                        elem_id="img2img_mask_blur"))
        fields.add("inpainting_mask_invert", ui.make(gr.Radio, TAB, "Mask mode",
                                                     choices=["Inpaint masked", "Inpaint not masked"],
                                                     value="Inpaint masked", type="index",
                                                     elem_id="img2img_mask_mode"))
    fields.add("inpainting_fill", ui.make(gr.Radio, TAB, "Masked content", choices=MASKED_CONTENT, value="original",
                                          type="index", elem_id="img2img_inpainting_fill"))
    with gr.Row():
        fields.add("inpaint_full_res", ui.make(gr.Radio, TAB, "Inpaint area", choices=["Whole picture", "Only masked"],
                                               value="Whole picture", type="index", elem_id="img2img_inpaint_full_res"))
        fields.add("inpaint_full_res_padding", ui.make(gr.Slider, TAB, "Only masked padding, pixels", minimum=0,
                                                       maximum=256, value=32, step=4,
                                                       elem_id="img2img_inpaint_full_res_padding"))


def _build_inputs(ui: "UiDefaults") -> tuple[Any, Any, Any, Any, Any, Any, dict[str, Any], dict[str, Any]]:
    from webui.img2img_modes import MODE_TABS, build_batch_tab, sketch_editor

    # a hidden field, not a gr.State, so that API callers can choose the mode too
    mode = gr.Radio([name for name, _ in MODE_TABS], value="img2img", visible=False, elem_id="img2img_mode",
                    label="Mode")
    extra: dict[str, Any] = {}
    with gr.Tabs(elem_id="img2img_mode_tabs") as tabs:
        with gr.Tab("img2img", id="img2img") as tab_img:
            image = gr.Image(label="Image for img2img", type="pil", image_mode="RGBA", sources=["upload", "clipboard"],
                             elem_id="img2img_image", height=360)
        with gr.Tab("Sketch", id="sketch") as extra["tab_sketch"]:
            extra["sketch"] = sketch_editor("Sketch: draw in colour on the image (the strokes become part of it)",
                                            "img2img_sketch")
        with gr.Tab("Inpaint", id="inpaint") as tab_inpaint:
            editor = gr.ImageEditor(label="Image and mask: paint over what to repaint", type="pil",
                                    image_mode="RGBA", sources=["upload", "clipboard"], elem_id="img2img_inpaint_editor",
                                    brush=gr.Brush(colors=[("#ff00ff", 0.6)], color_mode="fixed", default_size=16),
                                    eraser=gr.Eraser(default_size=16), layers=False, transforms=(), height=420)
            mask_upload = gr.Image(label="Or upload a mask (white = repaint)", type="pil", image_mode="RGBA",
                                   sources=["upload"], elem_id="img2img_mask_upload", height=160)
        with gr.Tab("Inpaint sketch", id="inpaint_sketch") as extra["tab_inpaint_sketch"]:
            extra["inpaint_sketch"] = sketch_editor("Inpaint sketch: draw in colour over what to repaint (the strokes "
                                                    "are the mask and their colour guides it)",
                                                    "img2img_inpaint_sketch")
        with gr.Tab("Outpaint", id="outpaint") as tab_outpaint:
            outpaint_image = gr.Image(label="Image to extend", type="pil", image_mode="RGBA",
                                      sources=["upload", "clipboard"], elem_id="img2img_outpaint_image", height=300)
            sides: dict[str, Any] = {}
            with gr.Row():
                for side in ("left", "right", "up", "down"):
                    sides[side] = ui.make(gr.Slider, TAB, f"Outpaint {side}", minimum=0, maximum=512, value=0, step=8,
                                          elem_id=f"img2img_outpaint_{side}")
            sides["fill"] = ui.make(gr.Radio, TAB, "Outpaint content", choices=MASKED_CONTENT, value="fill",
                                    type="index", elem_id="img2img_outpaint_fill")
        with gr.Tab("Batch", id="batch") as extra["tab_batch"]:
            extra["batch"] = build_batch_tab(ui)
    for tab, name in ((tab_img, "img2img"), (extra["tab_sketch"], "sketch"), (tab_inpaint, "inpaint"),
                      (extra["tab_inpaint_sketch"], "inpaint_sketch"), (tab_outpaint, "outpaint"),
                      (extra["tab_batch"], "batch")):
        tab.select(lambda n=name: n, outputs=[mode], queue=False, show_progress="hidden", api_visibility="private")
    return mode, tabs, image, editor, mask_upload, outpaint_image, sides, extra


def _wire_interrogate(ctx: "AppContext", row: PromptRow, images: list[Any], caption: Any, tags: Any) -> None:
    """Interrogate (caption / tags): describe the image of the current mode with the interrogation
    classifier, into the prompt."""
    from webui.common import owner_of, status_html

    def run(model: str, mode_v: str, image_v: Any, editor_v: Any, outpaint_v: Any, sketch_v: Any, isketch_v: Any,
            request: gr.Request) -> Iterator[tuple[Any, str]]:
        """Queue an ``interrogate`` job (the classifier runs on the device); its caption becomes the prompt."""
        from modules.images.codec import encode_png_base64
        from modules.understanding.interrogate_job import interrogate_request
        from webui.img2img_inputs import mode_image
        from webui.progress import run_and_follow

        picture = mode_image(mode_v, image_v, editor_v, sketch_v, isketch_v, outpaint_v)
        if picture is None:
            yield gr.skip(), status_html(f"Upload an image into the {mode_v} tab first.", "warn")
            return
        try:  # over the chosen understanding backend (Settings → understanding_backend), as /sdapi/v1/interrogate
            job_request = interrogate_request(ctx, encode_png_base64(picture, None), model)
        except Exception as exc:  # noqa: BLE001 - an unknown backend in Settings: said in the page
            yield gr.skip(), status_html(ctx.paths.scrub(str(exc)), "error")
            return
        for job, status in run_and_follow(ctx, job_request, owner_of(request)):
            if job is None or status:
                yield gr.skip(), status
            else:
                yield job.result.caption, status_html(f"Interrogated ({model}): the prompt is the description.",
                                                      "ok")

    def with_model(model: str) -> Callable[..., Iterator[tuple[Any, str]]]:
        # a plain function (not functools.partial), so Gradio sees the gr.Request parameter and fills it
        def event(mode_v: str, image_v: Any, editor_v: Any, outpaint_v: Any, sketch_v: Any, isketch_v: Any,
                  request: gr.Request) -> Iterator[tuple[Any, str]]:
            yield from run(model, mode_v, image_v, editor_v, outpaint_v, sketch_v, isketch_v, request)

        return event

    for button, model in ((caption, "clip"), (tags, "deepdanbooru")):
        button.click(with_model(model), inputs=images, outputs=[row.prompt, row.note],
                     api_visibility="private", concurrency_limit=1)


def build_img2img_tab(ctx: "AppContext", ui: "UiDefaults") -> Img2ImgTab:
    from webui.extra_networks import build_extra_networks
    from webui.sections import build_sections, collect_sections

    fields = Fields()
    row = build_prompt_row(ctx, ui, TAB, fields)
    networks = build_extra_networks(ctx, TAB, row)  # A1111's "Extra networks" panel, under the prompts
    with gr.Row(equal_height=False):
        with gr.Column(scale=1):
            mode, tabs, image, editor, mask_upload, outpaint_image, sides, extra = _build_inputs(ui)
            with gr.Row(elem_id="img2img_copy_row"):
                gr.Markdown("Copy image to:", elem_id="img2img_copy_label")
                copy_buttons = {target: gr.Button(label, size="sm", elem_id=f"img2img_copy_to_{target}",
                                                  min_width=60) for target, label in COPY_TARGETS}
            with gr.Row():
                interrogate = gr.Button("Interrogate (caption)", icon=icon("search"), size="sm",
                                        elem_id="img2img_interrogate")
                tags = gr.Button("Interrogate (tags)", icon=icon("tag"), size="sm", elem_id="img2img_deepbooru")
            fields.add("resize_mode", ui.make(gr.Radio, TAB, "Resize mode", choices=RESIZE_MODES, value="Just resize",
                                              type="index", elem_id="img2img_resize_mode"))
            with gr.Accordion("Inpaint options", open=False, elem_id="img2img_inpaint_options"):
                _build_inpaint_options(ui, fields)
                soft = build_soft_inpainting(ui)
            build_sampling(ui, TAB, fields)
            resize = build_resize(ui, fields, build_size)
            build_batch_and_cfg(ui, TAB, fields)
            fields.add("denoising_strength", ui.make(gr.Slider, TAB, "Denoising strength", minimum=0, maximum=1,
                                                     value=0.75, step=0.01, elem_id="img2img_denoising_strength"))
            seed = build_seed(ui, TAB, fields)
            build_advanced(ui, TAB, fields)
            build_sections(ctx, ui, TAB, fields)
            for name, component in soft.items():  # after the others: earlier API parameters keep their places
                fields.add(name, component)
        with gr.Column(scale=1):
            results = build_results(TAB)
    side_inputs = [sides["left"], sides["right"], sides["up"], sides["down"], sides["fill"]]
    modes = ModeWidgets(extra["sketch"], extra["inpaint_sketch"], extra["batch"], resize)

    def run(request: gr.Request, mode_v: str, image_v: Any, editor_v: Any, mask_v: Any, outpaint_v: Any,
            left: float, right: float, up: float, down: float, outpaint_fill: int,
            *values: Any) -> Iterator[tuple[Any, ...]]:
        if mode_v in SKETCH_MODES:  # run_sketch generates it
            yield tuple(gr.skip() for _ in results.outputs)
            return
        yield from generate(request, mode_v, image_v, editor_v, mask_v, outpaint_v, (left, right, up, down),
                            outpaint_fill, None, None, values)

    def run_sketch(request: gr.Request, mode_v: str, sketch_v: Any, isketch_v: Any,
                   *values: Any) -> Iterator[tuple[Any, ...]]:
        if mode_v not in SKETCH_MODES:  # run generates it
            yield tuple(gr.skip() for _ in results.outputs)
            return
        yield from generate(request, mode_v, None, None, None, None, (0, 0, 0, 0), 0, sketch_v, isketch_v, values)

    def generate(request: gr.Request, mode_v: str, image_v: Any, editor_v: Any, mask_v: Any, outpaint_v: Any,
                 sides_v: tuple[float, float, float, float], outpaint_fill: int, sketch_v: Any, isketch_v: Any,
                 values: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
        from modules.generation.runners.img2img import encode_request_image, flatten
        from modules.generation.sampling.previews import preview_every
        from modules.generation.requests import Img2ImgRequest, Outpaint
        from modules.jobs.submit import submit_job
        from webui.common import owner_of
        from webui.img2img_inputs import request_images
        from webui.recall import remember_submission

        tools_v, values = modes.split(values)

        def submit() -> Any:
            if mode_v == "batch":
                data = collect_sections(request_values(fields.values(values)), TAB, ctx=ctx)
                job = submit_job(ctx, batch_request(data, tools_v), owner=owner_of(request), source="webui")
                remember_submission(ctx, request, TAB, fields.values(values))
                return job
            init, mask = request_images(mode_v, image_v, editor_v, mask_v, outpaint_v, sketch_v, isketch_v)
            data = collect_sections(request_values(fields.values(values)), TAB, ctx=ctx)
            data = finish_request_data(mode_v, data, init, tools_v)
            data["init_images"] = [encode_request_image(flatten(init))]
            data["mask"] = encode_request_image(mask) if mask is not None else None
            if mode_v == "outpaint":
                left, right, up, down = (int(side or 0) for side in sides_v)
                data["outpaint"] = Outpaint(left=left, right=right, up=up, down=down)
                data["inpainting_fill"] = int(outpaint_fill or 0)
            job = submit_job(ctx, Img2ImgRequest(**data), owner=owner_of(request), source="webui")
            remember_submission(ctx, request, TAB, fields.values(values))  # for ↙ with an empty prompt
            return job

        yield from run_job(ctx, submit, previews=preview_every(ctx.settings.current) > 0)

    _wire_interrogate(ctx, row, [mode, image, editor, outpaint_image, modes.sketch, modes.inpaint_sketch],
                      interrogate, tags)
    wire_copy_buttons(copy_buttons, mode, tabs, [image, editor, modes.sketch, modes.inpaint_sketch, outpaint_image],
                      {"img2img": image, "sketch": modes.sketch, "inpaint": editor,
                       "inpaint_sketch": modes.inpaint_sketch})
    inputs = [mode, image, editor, mask_upload, outpaint_image, *side_inputs, *fields.inputs, *modes.components]
    row.generate.click(run, inputs=inputs, outputs=results.outputs, api_name="img2img", concurrency_limit=None,
                       show_progress="hidden")
    sketch_inputs = [mode, modes.sketch, modes.inpaint_sketch, *fields.inputs, *modes.components]
    row.generate.click(run_sketch, inputs=sketch_inputs, outputs=results.outputs, api_visibility="private",
                       concurrency_limit=None, show_progress="hidden")
    wire_tools(ctx, row, seed, fields, results)
    networks.use_results(results)  # "Use the selected result as its picture" in the metadata editor
    return Img2ImgTab(fields, row, seed, results, tabs, mode, image, editor, outpaint_image, modes)
