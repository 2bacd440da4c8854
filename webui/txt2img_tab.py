"""The txt2img tab: builds a Txt2ImgRequest from the fields, submits it, renders the result."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Iterator

import gradio as gr

from modules.generation.requests import Txt2ImgRequest

if TYPE_CHECKING:
    from modules.app_context import AppContext

POLL_SECONDS = 0.1


def _sampler_names() -> list[str]:
    from modules.generation.samplers import list_samplers

    return [s["name"] for s in list_samplers(None)]


def _schedule_labels() -> list[str]:
    from modules.generation.samplers import list_schedules

    return [s["label"] for s in list_schedules()]


def build_txt2img_tab(ctx: "AppContext") -> None:
    with gr.Row():
        with gr.Column(scale=3):
            prompt = gr.Textbox(label="Prompt", lines=3, elem_id="txt2img_prompt",
                                placeholder="a red circle on a blue background")
            negative = gr.Textbox(label="Negative prompt", lines=2, elem_id="txt2img_neg_prompt")
        with gr.Column(scale=1, min_width=160):
            generate = gr.Button("Generate", variant="primary", elem_id="txt2img_generate")
            interrupt = gr.Button("Interrupt", elem_id="txt2img_interrupt")
    with gr.Row():
        with gr.Column():
            with gr.Row():
                sampler = gr.Dropdown(_sampler_names(), value="Euler a", label="Sampling method",
                                      elem_id="txt2img_sampling")
                schedule = gr.Dropdown(_schedule_labels(), value="Automatic", label="Schedule type",
                                       elem_id="txt2img_scheduler")
            steps = gr.Slider(1, 150, value=20, step=1, label="Sampling steps", elem_id="txt2img_steps")
            with gr.Row():
                width = gr.Slider(0, 2048, value=0, step=8, label="Width (0: model's native size)",
                                  elem_id="txt2img_width")
                height = gr.Slider(0, 2048, value=0, step=8, label="Height (0: model's native size)",
                                   elem_id="txt2img_height")
            with gr.Row():
                batch_count = gr.Slider(1, 64, value=1, step=1, label="Batch count", elem_id="txt2img_batch_count")
                batch_size = gr.Slider(1, 8, value=1, step=1, label="Batch size", elem_id="txt2img_batch_size")
            cfg = gr.Slider(0, 30, value=7, step=0.5, label="CFG Scale", elem_id="txt2img_cfg_scale")
            seed = gr.Number(value=-1, precision=0, label="Seed (-1: random)", elem_id="txt2img_seed")
        with gr.Column():
            gallery = gr.Gallery(label="Output", columns=2, height="auto", elem_id="txt2img_gallery",
                                 format="png")
            status = gr.Markdown("", elem_id="txt2img_status")
            infotext = gr.Textbox(label="Generation parameters", lines=4, interactive=False,
                                  elem_id="txt2img_infotext")
    job_id = gr.State("")

    def run(prompt_v: str, negative_v: str, sampler_v: str, schedule_v: str, steps_v: float,
            width_v: float, height_v: float, batch_count_v: float, batch_size_v: float, cfg_v: float,
            seed_v: float, progress: gr.Progress = gr.Progress()) -> Iterator[Any]:
        from modules.generation.service import submit_txt2img
        from modules.jobs.queue import JobState

        try:
            req = Txt2ImgRequest(prompt=prompt_v, negative_prompt=negative_v, sampler_name=sampler_v,
                                 scheduler=schedule_v, steps=int(steps_v), width=int(width_v) or None,
                                 height=int(height_v) or None, n_iter=int(batch_count_v),
                                 batch_size=int(batch_size_v), cfg_scale=float(cfg_v),
                                 seed=int(seed_v if seed_v is not None else -1))
            job = submit_txt2img(ctx, req, owner="webui")
        except Exception as exc:  # noqa: BLE001 - every refusal is shown as a readable message
            raise gr.Error(_readable(exc)) from None
        yield gr.update(), "Queued…", gr.update(), job.id
        while not job.done.wait(POLL_SECONDS):
            position = ctx.queue.position(job.id)
            snap = job.progress
            if position and position > 0:
                progress(0.0, desc=f"In queue: {position} job(s) ahead")
            elif snap.total_steps:
                done = snap.job_no * snap.total_steps + snap.step
                progress((done, snap.total_steps * snap.job_count), desc=snap.text or "Generating",
                         unit="steps")
        if job.state is JobState.FAILED:
            raise gr.Error(job.error or "generation failed")
        result = job.result
        if result is None:
            yield gr.update(), f"Cancelled: {job.error}", "", ""
            return
        note = " (interrupted)" if result.interrupted else ""
        text = f"{len(result.images)} image(s) in {result.seconds:.1f} s{note}"
        yield [(img, f"seed {s}") for img, s in zip(result.images, result.seeds)], text, \
            (result.infotexts[0] if result.infotexts else ""), ""

    def stop(current_job: str) -> str:
        if current_job:
            ctx.queue.cancel(current_job)
        else:
            ctx.queue.interrupt()
        return "Interrupting…"

    generate.click(run, inputs=[prompt, negative, sampler, schedule, steps, width, height, batch_count,
                                batch_size, cfg, seed],
                   outputs=[gallery, status, infotext, job_id], concurrency_limit=None)
    interrupt.click(stop, inputs=[job_id], outputs=[status], queue=False)


def _readable(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):  # pydantic ValidationError
        first = errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return f"{where}: {first.get('msg')}"
    return str(exc) or type(exc).__name__


def wait_for(job: Any, timeout: float) -> bool:
    """Helper for tests: wait for a job to finish."""
    deadline = time.monotonic() + timeout
    return job.done.wait(max(0.0, deadline - time.monotonic()))
