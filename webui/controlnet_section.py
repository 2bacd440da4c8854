"""The ControlNet accordion of txt2img and img2img: :data:`UNITS` units laid out as sd-webui-controlnet's,
each with its control image, preprocessor (with a preview of the detected map), model, weight, guidance
range, control mode and resize mode.

The widgets are registered in the tab's :class:`~webui.params.Fields` as ``cn<N>_<field>``;
:func:`collect_units` folds them into the request's ``controlnet_units`` (sd-webui-controlnet unit
fields, validated by :class:`modules.generation.controlnet.units.ControlNetUnit`). In img2img a unit
without an image uses the init image, as the extension does.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Iterator

import gradio as gr

from webui.common import owner_of, status_html
from webui.look import ICON_ONLY_CLASS, icon
from webui.progress import run_and_follow

if TYPE_CHECKING:
    from modules.app_context import AppContext
    from webui.params import Fields
    from webui.ui_config import UiDefaults

UNITS = 2
PREFIX = "cn"
_WIDGET = re.compile(rf"^{PREFIX}\d+_")
RESIZE_MODES = ["Just Resize", "Crop and Resize", "Resize and Fill"]
CONTROL_MODES = ["Balanced", "My prompt is more important", "ControlNet is more important"]
#: unit fields taken from the widgets, in the order they are registered
UNIT_FIELDS = ("enabled", "image", "module", "model", "weight", "guidance_start", "guidance_end", "processor_res",
               "threshold_a", "threshold_b", "pixel_perfect", "control_mode", "resize_mode")


class ControlNetInputError(ValueError):
    """The ControlNet widgets cannot make a unit (message for the user)."""


def model_titles(ctx: "AppContext") -> list[str]:
    """"None" and the ControlNet models of ``models/ControlNet`` (data dir, then the shipped folder)."""
    from modules.generation.controlnet.models import ControlNetLibrary, controlnet_dirs

    dirs = ctx.paths.controlnet_search_dirs
    try:
        return ["None", *ControlNetLibrary(controlnet_dirs(dirs[0], dirs[1:])).titles()]
    except OSError:
        return ["None"]


def module_names(ctx: "AppContext") -> list[str]:
    """The preprocessors usable now (weight-free ones always; annotator ones when their files exist)."""
    from modules.generation.controlnet.preprocess import available_modules

    return available_modules(ctx.addons.annotators if ctx.addons is not None else None)[0]


def threshold_updates(module: str) -> tuple[Any, Any, Any]:
    """(processor resolution, threshold A, threshold B) sliders for ``module``: its labels, ranges and defaults."""
    from modules.generation.controlnet.preprocess import PreprocessorError, find_preprocessor

    try:
        pre = find_preprocessor(module)
    except PreprocessorError:
        return gr.update(visible=False), gr.update(visible=False, value=-1), gr.update(visible=False, value=-1)

    def slider(spec: Any) -> Any:
        if spec is None:
            return gr.update(visible=False, value=-1)
        return gr.update(visible=True, label=spec.name, minimum=spec.min, maximum=spec.max, step=spec.step,
                         value=spec.value)

    return gr.update(visible=pre.uses_resolution), slider(pre.threshold_a), slider(pre.threshold_b)


def _build_unit(ctx: "AppContext", ui: "UiDefaults", tab: str, fields: "Fields", index: int, modules: list[str],
                models: list[str], hint: Any) -> None:
    key = f"{PREFIX}{index}"
    eid = f"{tab}_controlnet_{index}"

    def add(name: str, component: Any) -> Any:
        return fields.add(f"{key}_{name}", component)

    empty = " (empty: the init image)" if tab == "img2img" else ""
    with gr.Row():
        image = gr.Image(label=f"Control image{empty}", type="pil", image_mode="RGB", sources=["upload", "clipboard"],
                         height=220, elem_id=f"{eid}_image")
        # the Generate event reads the image through a State: the /run and /img2img API stays optional-only
        held = add("image", gr.State(None))
        image.change(lambda picture: picture, inputs=[image], outputs=[held], queue=False, show_progress="hidden",
                     api_visibility="private")
        detected = gr.Image(label="Preprocessor preview", type="pil", interactive=False, height=220, format="png",
                            elem_id=f"{eid}_preview")
    with gr.Row():
        add("enabled", gr.Checkbox(label="Enable", value=False, elem_id=f"{eid}_enable"))
        add("pixel_perfect", ui.make(gr.Checkbox, tab, "Pixel Perfect", value=False, elem_id=f"{eid}_pixel_perfect"))
    with gr.Row():
        module = add("module", ui.make(gr.Dropdown, tab, "Preprocessor", choices=modules, value="none",
                                       elem_id=f"{eid}_module", scale=3))
        run_preview = gr.Button("Preview", icon=icon("eye"), size="sm", scale=1, min_width=0,
                                elem_id=f"{eid}_run_preview")
        model = add("model", gr.Dropdown(models, value="None", label="Model", elem_id=f"{eid}_model", scale=3))
        refresh = gr.Button("", icon=icon("refresh"), size="sm", scale=0, min_width=40,
                            elem_id=f"{eid}_refresh_models", elem_classes=[ICON_ONLY_CLASS])
    add("weight", ui.make(gr.Slider, tab, "Control Weight", minimum=0, maximum=2, value=1.0, step=0.05,
                          elem_id=f"{eid}_weight"))
    with gr.Row():
        add("guidance_start", ui.make(gr.Slider, tab, "Starting Control Step", minimum=0, maximum=1, value=0.0,
                                      step=0.01, elem_id=f"{eid}_guidance_start"))
        add("guidance_end", ui.make(gr.Slider, tab, "Ending Control Step", minimum=0, maximum=1, value=1.0,
                                    step=0.01, elem_id=f"{eid}_guidance_end"))
    with gr.Row():
        res = add("processor_res", ui.make(gr.Slider, tab, "Preprocessor Resolution", minimum=64, maximum=2048,
                                           value=512, step=8, visible=False, elem_id=f"{eid}_processor_res"))
        th_a = add("threshold_a", gr.Slider(-1, 255, value=-1, step=1, label="Threshold A", visible=False,
                                            elem_id=f"{eid}_threshold_a"))
        th_b = add("threshold_b", gr.Slider(-1, 255, value=-1, step=1, label="Threshold B", visible=False,
                                            elem_id=f"{eid}_threshold_b"))
    add("control_mode", ui.make(gr.Radio, tab, "Control Mode", choices=CONTROL_MODES, value="Balanced",
                                elem_id=f"{eid}_control_mode"))
    add("resize_mode", ui.make(gr.Radio, tab, "Resize Mode", choices=RESIZE_MODES, value="Crop and Resize",
                               elem_id=f"{eid}_resize_mode"))
    note = gr.HTML("", elem_id=f"{eid}_note")

    module.change(threshold_updates, inputs=[module], outputs=[res, th_a, th_b], queue=False, show_progress="hidden",
                  api_visibility="private")
    def refresh_models() -> tuple[Any, str]:
        titles = model_titles(ctx)
        return gr.update(choices=titles), models_hint(ctx, titles)

    refresh.click(refresh_models, outputs=[model, hint], queue=False, api_visibility="private")

    def preview(picture: Any, name: str, resolution: float, a: float, b: float,
                request: gr.Request) -> Iterator[tuple[Any, str]]:
        """Queue a ``controlnet_detect`` job (annotators run on the device) and show its map."""
        from modules.generation.controlnet.detect_job import DetectMapsRequest
        from modules.images.codec import encode_png_base64

        if picture is None:
            yield gr.skip(), status_html("Upload a control image first.", "warn")
            return
        job_request = DetectMapsRequest(images=[encode_png_base64(picture, None)], module=name or "none",
                                        processor_res=int(resolution), threshold_a=float(a), threshold_b=float(b))
        for job, status in run_and_follow(ctx, job_request, owner_of(request)):
            if job is None or status:
                yield gr.skip(), status
            elif job.result.images:
                yield job.result.images[0], ""

    run_preview.click(preview, inputs=[image, module, res, th_a, th_b], outputs=[detected, note],
                      api_visibility="private", concurrency_limit=1)


def models_hint(ctx: "AppContext", models: list[str]) -> str:
    if len(models) > 1:
        return ""
    return status_html(f"No ControlNet model yet: put one in {ctx.paths.shown(ctx.paths.controlnet_dir)} and press "
                       "the refresh button beside the Model list. The preprocessors work without one (Preview).")


def build_controlnet(ctx: "AppContext", ui: "UiDefaults", tab: str, fields: "Fields") -> None:
    modules, models = module_names(ctx), model_titles(ctx)
    with gr.Accordion("ControlNet", open=False, elem_id=f"{tab}_controlnet"):
        hint = gr.HTML(models_hint(ctx, models), elem_id=f"{tab}_controlnet_hint")
        with gr.Tabs():
            for index in range(UNITS):
                with gr.Tab(f"ControlNet Unit {index}", id=f"{tab}_controlnet_unit_{index}"):
                    _build_unit(ctx, ui, tab, fields, index, modules, models, hint)


def collect_units(values: dict[str, Any], tab: str) -> dict[str, Any]:
    """Request kwargs with the ``cn<N>_*`` widgets folded into ``controlnet_units`` (enabled units only)."""
    from modules.generation.runners.img2img import encode_request_image

    out = {k: v for k, v in values.items() if not _WIDGET.match(k)}
    units: list[dict[str, Any]] = []
    for index in range(UNITS):
        raw = {name: values.get(f"{PREFIX}{index}_{name}") for name in UNIT_FIELDS}
        if not raw["enabled"]:
            continue
        if not raw["model"] or raw["model"] == "None":
            raise ControlNetInputError(f"ControlNet unit {index} is enabled but has no model: pick one "
                                       "(or untick Enable)")
        image = raw.pop("image")
        if image is None and tab != "img2img":
            raise ControlNetInputError(f"ControlNet unit {index} needs a control image: upload one")
        raw["image"] = encode_request_image(image.convert("RGB")) if image is not None else None
        raw["processor_res"] = int(raw["processor_res"] or -1)
        units.append(raw)
    if units:
        out["controlnet_units"] = units
    return out
