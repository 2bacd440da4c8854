"""The generation-parameter widgets shared by txt2img and img2img, keyed by request field name.

Every widget that maps to a request field is registered in a :class:`Fields` under the A1111/Atelier
field name (``prompt``, ``steps``, ``hr_scale``...). That one table builds the typed request
(:meth:`Fields.values`) and drives parameter recall (:func:`paste_updates`): an infotext is parsed
with :func:`modules.images.infotext.parse_infotext` and every field it names is filled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable

import gradio as gr

from modules.generation.requests import DEFAULT_SAMPLER
from webui.common import sampler_names, schedule_labels
from webui.look import ICON_ONLY_CLASS, icon
from webui.styles_editor import build_style_editor

if TYPE_CHECKING:
    from modules.app_context import AppContext
    from webui.ui_config import UiDefaults

SEED_FIELDS = ("seed", "subseed", "subseed_strength", "seed_resize_from_w", "seed_resize_from_h")
SIZE_FIELDS = ("width", "height")


@dataclass
class Fields:
    """Request field name -> component, in the order the event passes them."""

    components: dict[str, Any] = field(default_factory=dict)
    #: ``paster(text, params) -> {field: value}``: extra fills for a pasted infotext (the scripts section's);
    #: it may change ``params`` (parsed infotext) in place, e.g. drop the keys it used
    pasters: list[Any] = field(default_factory=list)

    def add(self, name: str, component: Any) -> Any:
        self.components[name] = component
        return component

    @property
    def names(self) -> list[str]:
        return list(self.components)

    @property
    def inputs(self) -> list[Any]:
        return list(self.components.values())

    def values(self, values: Iterable[Any]) -> dict[str, Any]:
        return dict(zip(self.components, values))


def request_values(raw: dict[str, Any], *, zero_is_none: Iterable[str] = SIZE_FIELDS) -> dict[str, Any]:
    """UI values -> request kwargs: sliders' floats to ints where the request wants ints, 0 -> None."""
    out: dict[str, Any] = {}
    for name, value in raw.items():
        if isinstance(value, float) and value.is_integer() and name not in ("cfg_scale", "denoising_strength",
                                                                            "subseed_strength", "hr_scale",
                                                                            "distilled_cfg_scale", "refiner_switch_at"):
            value = int(value)
        if name in zero_is_none and not value:
            value = None
        if name in ("seed", "subseed") and value is None:
            value = -1
        out[name] = value
    return out


@dataclass
class PromptRow:
    prompt: Any
    negative: Any
    generate: Any
    interrupt: Any
    skip: Any
    paste: Any
    clear: Any
    load_png: Any
    styles: Any
    apply_styles: Any
    style_name: Any
    save_style: Any
    note: Any
    style_editor: Any = None  # webui/styles_editor.py: edit, rename, delete styles


def build_prompt_row(ctx: "AppContext", ui: "UiDefaults", tab: str, fields: Fields) -> PromptRow:
    """Prompts on the left; Generate / Interrupt / Skip, the tool buttons and styles on the right."""
    style_names = ctx.styles.names() if ctx.styles is not None else []
    with gr.Row(equal_height=False):
        with gr.Column(scale=4):
            prompt = fields.add("prompt", ui.make(
                gr.Textbox, tab, "Prompt", value="", lines=5, max_lines=12, elem_id=f"{tab}_prompt",
                placeholder="Prompt (Ctrl+Enter generates, Alt+Enter skips, Esc interrupts; Ctrl+Up/Down weighs "
                            "a word; paste a whole infotext and press Paste, or drop a PNG here, to fill every field)"))
            negative = fields.add("negative_prompt", ui.make(
                gr.Textbox, tab, "Negative prompt", value="", lines=3, max_lines=8, elem_id=f"{tab}_neg_prompt"))
            # under the prompts, not across the page: a full-width row here opened a band above the parameters
            note = gr.HTML("", elem_id=f"{tab}_paste_note")
        with gr.Column(scale=1, min_width=240):
            generate = gr.Button("Generate", variant="primary", elem_id=f"{tab}_generate", size="lg")
            with gr.Row():
                interrupt = gr.Button("Interrupt", elem_id=f"{tab}_interrupt", size="sm", variant="stop", min_width=0)
                skip = gr.Button("Skip", elem_id=f"{tab}_skip", size="sm", min_width=0)
            with gr.Row():
                paste = gr.Button("Paste", icon=icon("paste"), elem_id=f"{tab}_paste", size="sm", min_width=0)
                load_png = gr.UploadButton("PNG", icon=icon("folder"), elem_id=f"{tab}_load_png", size="sm",
                                           min_width=0, file_types=["image"], file_count="single", type="filepath")
                clear = gr.Button("Clear", icon=icon("trash"), elem_id=f"{tab}_clear_prompt", size="sm", min_width=0)
            styles = fields.add("styles", gr.Dropdown(
                style_names, value=[], multiselect=True, label="Styles", elem_id=f"{tab}_styles",
                interactive=ctx.styles is not None,
                info=None if ctx.styles is not None else "styles.csv is unreadable: see the log"))
            with gr.Row():
                apply_styles = gr.Button("Apply style", icon=icon("brush"), elem_id=f"{tab}_style_apply", size="sm",
                                         min_width=0)
                save_style = gr.Button("Save style", icon=icon("save"), elem_id=f"{tab}_style_create", size="sm",
                                       min_width=0)
            style_name = gr.Textbox(show_label=False, placeholder="style name (for Save style)",
                                    elem_id=f"{tab}_style_name", container=False, max_lines=1)
            style_editor = build_style_editor(ctx, tab)
    return PromptRow(prompt, negative, generate, interrupt, skip, paste, clear, load_png, styles, apply_styles,
                     style_name, save_style, note, style_editor)


def build_sampling(ui: "UiDefaults", tab: str, fields: Fields) -> None:
    with gr.Row():
        fields.add("sampler_name", ui.make(gr.Dropdown, tab, "Sampling method", choices=sampler_names(),
                                           value=DEFAULT_SAMPLER, elem_id=f"{tab}_sampling"))
        fields.add("scheduler", ui.make(gr.Dropdown, tab, "Schedule type", choices=schedule_labels(),
                                        value="Automatic", elem_id=f"{tab}_scheduler"))
    fields.add("steps", ui.make(gr.Slider, tab, "Sampling steps", minimum=1, maximum=150, value=20, step=1,
                                elem_id=f"{tab}_steps"))


def build_size(ui: "UiDefaults", tab: str, fields: Fields, zero_means: str) -> None:
    with gr.Row(equal_height=True):
        width = fields.add("width", ui.make(gr.Slider, tab, "Width", minimum=0, maximum=2048, value=0, step=8,
                                            elem_id=f"{tab}_width", info=f"0: {zero_means}"))
        height = fields.add("height", ui.make(gr.Slider, tab, "Height", minimum=0, maximum=2048, value=0, step=8,
                                              elem_id=f"{tab}_height", info=f"0: {zero_means}"))
        swap = gr.Button("", icon=icon("swap"), elem_id=f"{tab}_res_switch_btn", size="sm", min_width=40, scale=0,
                         elem_classes=[ICON_ONLY_CLASS])
    # ⇅ (A1111's res_switch_btn): in the page, no server round trip
    swap.click(None, inputs=[width, height], outputs=[width, height], js="(w, h) => [h, w]")


def build_batch_and_cfg(ui: "UiDefaults", tab: str, fields: Fields) -> None:
    with gr.Row():
        fields.add("n_iter", ui.make(gr.Slider, tab, "Batch count", minimum=1, maximum=64, value=1, step=1,
                                     elem_id=f"{tab}_batch_count"))
        fields.add("batch_size", ui.make(gr.Slider, tab, "Batch size", minimum=1, maximum=8, value=1, step=1,
                                         elem_id=f"{tab}_batch_size"))
    fields.add("cfg_scale", ui.make(gr.Slider, tab, "CFG Scale", minimum=0, maximum=30, value=7.0, step=0.5,
                                    elem_id=f"{tab}_cfg_scale"))


@dataclass
class SeedRow:
    seed: Any
    random: Any
    reuse: Any


def build_seed(ui: "UiDefaults", tab: str, fields: Fields) -> SeedRow:
    with gr.Row():
        seed = fields.add("seed", ui.make(gr.Number, tab, "Seed", value=-1, precision=0, elem_id=f"{tab}_seed",
                                          scale=4, info="-1: random"))
        random = gr.Button("", icon=icon("dice"), elem_id=f"{tab}_random_seed", size="sm", min_width=40, scale=0,
                           elem_classes=[ICON_ONLY_CLASS])
        reuse = gr.Button("", icon=icon("reuse"), elem_id=f"{tab}_reuse_seed", size="sm", min_width=40, scale=0,
                          elem_classes=[ICON_ONLY_CLASS])
    random.click(lambda: -1, outputs=[seed], queue=False, show_progress="hidden", api_visibility="private")
    return SeedRow(seed, random, reuse)


def build_advanced(ui: "UiDefaults", tab: str, fields: Fields) -> None:
    """Variation seed, clip skip and FLUX guidance (closed by default)."""
    with gr.Accordion("Advanced: variation seed, clip skip, FLUX guidance", open=False, elem_id=f"{tab}_advanced"):
        with gr.Row():
            fields.add("subseed", ui.make(gr.Number, tab, "Variation seed", value=-1, precision=0,
                                          elem_id=f"{tab}_subseed"))
            fields.add("subseed_strength", ui.make(gr.Slider, tab, "Variation strength", minimum=0, maximum=1,
                                                   value=0.0, step=0.01, elem_id=f"{tab}_subseed_strength"))
        with gr.Row():
            fields.add("seed_resize_from_w", ui.make(gr.Slider, tab, "Resize seed from width", minimum=-1,
                                                     maximum=2048, value=-1, step=8, elem_id=f"{tab}_seed_resize_w"))
            fields.add("seed_resize_from_h", ui.make(gr.Slider, tab, "Resize seed from height", minimum=-1,
                                                     maximum=2048, value=-1, step=8, elem_id=f"{tab}_seed_resize_h"))
        with gr.Row():
            fields.add("clip_skip", ui.make(gr.Slider, tab, "Clip skip", minimum=1, maximum=12, value=1, step=1,
                                            elem_id=f"{tab}_clip_skip"))
            fields.add("randn_source", ui.make(gr.Dropdown, tab, "Random numbers (RNG)",
                                               choices=[("From Settings", ""), ("CPU", "CPU"),
                                                        ("GPU (A1111's default)", "GPU"), ("NV", "NV")],
                                               value="", elem_id=f"{tab}_randn_source",
                                               info="GPU gives the pictures A1111 makes on an NVIDIA GPU, "
                                                    "on any device"))
            fields.add("distilled_cfg_scale", ui.make(gr.Slider, tab, "Distilled CFG Scale (FLUX.1 dev)",
                                                      minimum=0, maximum=30, value=3.5, step=0.5,
                                                      elem_id=f"{tab}_distilled_cfg"))


# ---------------------------------------------------------------------------- parameter recall

def _choices(component: Any) -> list[Any] | None:
    choices = getattr(component, "choices", None)
    if choices is None:
        return None
    return [c[1] if isinstance(c, (tuple, list)) else c for c in choices]


def paste_updates(fields: Fields, text: str, *, send_seed: bool = True, send_size: bool = True,
                  only: Iterable[str] | None = None) -> tuple[list[Any], str]:
    """(one update per field, a note) for an infotext: each field the infotext names is filled.

    The note lists what could not be applied (unknown sampler, a model to switch to, unknown keys).
    """
    from modules.images.infotext import infotext_to_request_fields, parse_infotext

    text = (text or "").strip()
    if not text:
        return [gr.skip() for _ in fields.names], "Nothing to read: paste an infotext or drop a PNG with one."
    params = parse_infotext(text)
    pasted: dict[str, Any] = {}
    for paster in fields.pasters:
        pasted.update(paster(text, params))
    values = {**infotext_to_request_fields(params), **pasted}
    extra = dict(values.pop("extra", {}) or {})
    skipped: list[str] = []
    wanted = set(only) if only is not None else None
    if not send_seed:
        wanted = (wanted or set(fields.names)) - set(SEED_FIELDS)
    if not send_size:
        wanted = (wanted or set(fields.names)) - set(SIZE_FIELDS)
    updates: list[Any] = []
    filled = 0
    for name, component in fields.components.items():
        if name not in values or (wanted is not None and name not in wanted):
            updates.append(gr.skip())
            continue
        value = values[name]
        choices = _choices(component)
        if choices is not None and not isinstance(value, list) and value not in choices:
            skipped.append(f"{name}={value}")
            updates.append(gr.skip())
            continue
        updates.append(gr.update(value=value))
        filled += 1
    if values.get("checkpoint"):
        skipped.append(f"model {values['checkpoint']} (pick it in the checkpoint list)")
    skipped += [f"{key}" for key in extra if key not in ("Version", "Model hash", "Downcast alphas_cumprod")]
    note = f"Filled {filled} field(s) from the infotext."
    if skipped:
        note += " Not applied: " + ", ".join(skipped[:12]) + ("…" if len(skipped) > 12 else "")
    return updates, note
