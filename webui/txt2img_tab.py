"""The txt2img tab: prompts, sampling, size, batch, seed, hires fix and refiner; builds a
:class:`Txt2ImgRequest`, submits it through :func:`modules.jobs.submit.submit_job` and
follows the job live (bar, ETA, previews, queue position).

The Generate event is ``/run`` in the Gradio API; its first 11 inputs are prompt, negative prompt,
sampler, schedule, steps, width, height, batch count, batch size, CFG scale and seed (the rest have
defaults).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

import gradio as gr

from webui.params import (Fields, PromptRow, SeedRow, build_advanced, build_batch_and_cfg, build_prompt_row,
                          build_sampling, build_seed, build_size, request_values)
from webui.results import Results, build_results, run_job
from webui.tools import wire_hires_again, wire_tools

if TYPE_CHECKING:
    from modules.app_context import AppContext
    from webui.ui_config import UiDefaults

TAB = "txt2img"


@dataclass
class Txt2ImgTab:
    fields: Fields
    row: PromptRow
    seed: SeedRow
    results: Results
    hires: Any


def _build_hires(ctx: "AppContext", ui: "UiDefaults", fields: Fields) -> Any:
    from webui.common import sampler_names, schedule_labels

    # Enable stays visible with the section closed (A1111 has it in the section's header); ticking it opens it
    enable = fields.add("enable_hr", ui.make(gr.Checkbox, TAB, "Enable hires fix", value=False,
                                             elem_id="txt2img_enable_hr"))
    with gr.Accordion("Hires. fix", open=False, elem_id="txt2img_hr") as hires:
        with gr.Row():
            fields.add("hr_upscaler", ui.make(gr.Dropdown, TAB, "Upscaler", choices=ctx.upscalers.names(),
                                              value="Latent", elem_id="txt2img_hr_upscaler"))
            fields.add("hr_second_pass_steps", ui.make(gr.Slider, TAB, "Hires steps", minimum=0, maximum=150,
                                                       value=0, step=1, elem_id="txt2img_hires_steps",
                                                       info="0: same as sampling steps"))
            fields.add("denoising_strength", ui.make(gr.Slider, TAB, "Denoising strength", minimum=0, maximum=1,
                                                     value=0.7, step=0.01, elem_id="txt2img_denoising_strength"))
        with gr.Row():
            fields.add("hr_scale", ui.make(gr.Slider, TAB, "Upscale by", minimum=1, maximum=4, value=2.0, step=0.05,
                                           elem_id="txt2img_hr_scale"))
            fields.add("hr_resize_x", ui.make(gr.Slider, TAB, "Resize width to", minimum=0, maximum=4096, value=0,
                                              step=8, elem_id="txt2img_hr_resize_x"))
            fields.add("hr_resize_y", ui.make(gr.Slider, TAB, "Resize height to", minimum=0, maximum=4096, value=0,
                                              step=8, elem_id="txt2img_hr_resize_y"))
        with gr.Row():
            fields.add("hr_sampler_name", ui.make(gr.Dropdown, TAB, "Hires sampling method",
                                                  choices=["Use same sampler", *sampler_names()],
                                                  value="Use same sampler", elem_id="txt2img_hr_sampler"))
            fields.add("hr_scheduler", ui.make(gr.Dropdown, TAB, "Hires schedule type",
                                               choices=["Use same scheduler", *schedule_labels()],
                                               value="Use same scheduler", elem_id="txt2img_hr_scheduler"))
        with gr.Row():
            fields.add("hr_prompt", ui.make(gr.Textbox, TAB, "Hires prompt", value="", lines=2,
                                            placeholder="empty: same prompt", elem_id="txt2img_hr_prompt"))
            fields.add("hr_negative_prompt", ui.make(gr.Textbox, TAB, "Hires negative prompt", value="", lines=2,
                                                     placeholder="empty: same negative prompt",
                                                     elem_id="txt2img_hr_neg_prompt"))
    enable.input(lambda on: gr.update(open=True) if on else gr.skip(), inputs=[enable], outputs=[hires],
                 queue=False, show_progress="hidden", api_visibility="private")
    return hires


def _build_refiner(ctx: "AppContext", ui: "UiDefaults", fields: Fields) -> None:
    from webui.common import checkpoint_titles

    with gr.Accordion("Refiner", open=False, elem_id="txt2img_refiner"):
        with gr.Row():
            fields.add("refiner_checkpoint", ui.make(gr.Dropdown, TAB, "Refiner checkpoint",
                                                     choices=["None", *checkpoint_titles(ctx)], value="None",
                                                     elem_id="txt2img_refiner_checkpoint"))
            fields.add("refiner_switch_at", ui.make(gr.Slider, TAB, "Switch at", minimum=0.01, maximum=0.99,
                                                    value=0.8, step=0.01, elem_id="txt2img_refiner_switch_at"))


def build_txt2img_tab(ctx: "AppContext", ui: "UiDefaults") -> Txt2ImgTab:
    from webui.extra_networks import build_extra_networks
    from webui.sections import build_sections, collect_sections

    fields = Fields()
    row = build_prompt_row(ctx, ui, TAB, fields)
    networks = build_extra_networks(ctx, TAB, row)  # A1111's "Extra networks" panel, under the prompts
    with gr.Row(equal_height=False):
        with gr.Column(scale=1):
            build_sampling(ui, TAB, fields)
            build_size(ui, TAB, fields, "the model's native size")
            build_batch_and_cfg(ui, TAB, fields)
            seed = build_seed(ui, TAB, fields)
            hires = _build_hires(ctx, ui, fields)
            _build_refiner(ctx, ui, fields)
            build_advanced(ui, TAB, fields)
            build_sections(ctx, ui, TAB, fields)
        with gr.Column(scale=1):
            results = build_results(TAB)
    # the API order: the historical 11 inputs first, then every other field
    first = ["prompt", "negative_prompt", "sampler_name", "scheduler", "steps", "width", "height", "n_iter",
             "batch_size", "cfg_scale", "seed"]
    ordered = Fields({name: fields.components[name] for name in first + [n for n in fields.names if n not in first]})

    def run(request: gr.Request, *values: Any) -> Iterator[tuple[Any, ...]]:
        from modules.generation.sampling.previews import preview_every
        from modules.generation.requests import Txt2ImgRequest
        from modules.jobs.submit import submit_job
        from webui.common import owner_of
        from webui.recall import remember_submission

        def submit() -> Any:
            req = Txt2ImgRequest(**collect_sections(request_values(ordered.values(values)), TAB, ctx=ctx))
            job = submit_job(ctx, req, owner=owner_of(request), source="webui")
            remember_submission(ctx, request, TAB, ordered.values(values))  # for ↙ with an empty prompt
            return job

        yield from run_job(ctx, submit, previews=preview_every(ctx.settings.current) > 0)

    row.generate.click(run, inputs=ordered.inputs, outputs=results.outputs, api_name="run",
                       concurrency_limit=None, show_progress="hidden")
    wire_tools(ctx, row, seed, fields, results)
    networks.use_results(results)  # "Use the selected result as its picture" in the metadata editor
    wire_hires_again(ctx, results, ordered.inputs,
                     lambda values: collect_sections(request_values(ordered.values(values)), TAB, ctx=ctx))
    return Txt2ImgTab(fields, row, seed, results, hires)
