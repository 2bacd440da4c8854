"""The results side of a generation tab: the gallery of the current results, the live progress bar,
the selected image's infotext, and the "send to" buttons (wired across tabs in :mod:`webui.app`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator

import gradio as gr

from webui.common import error, owner_of, readable
from webui.look import RESULT_CLASS, icon
from webui.progress import bar_html, final_status, results_gallery, watch

if TYPE_CHECKING:
    from modules.app_context import AppContext
    from modules.jobs.model import Job


@dataclass
class Results:
    gallery: Any
    status: Any
    infotext: Any
    texts: Any          # gr.State: infotexts of the shown images
    seeds: Any          # gr.State: seeds of the shown images
    selected: Any       # gr.State: index of the selected image
    job_id: Any         # gr.State: the running job of this session
    send_img2img: Any
    send_inpaint: Any
    send_extras: Any

    @property
    def outputs(self) -> list[Any]:
        """The outputs of a generation event, in the order :func:`run_job` yields them."""
        return [self.gallery, self.status, self.infotext, self.texts, self.seeds, self.job_id]


def build_results(tab: str) -> Results:
    status = gr.HTML("", elem_id=f"{tab}_status")
    gallery = gr.Gallery(label="Output", columns=2, height=420, elem_id=f"{tab}_gallery", format="png",
                         object_fit="contain", interactive=False, buttons=["download", "fullscreen"],
                         elem_classes=[RESULT_CLASS])
    with gr.Row():
        send_img2img = gr.Button("img2img", icon=icon("image"), size="sm", elem_id=f"{tab}_send_to_img2img",
                                 min_width=0)
        send_inpaint = gr.Button("inpaint", icon=icon("pencil"), size="sm", elem_id=f"{tab}_send_to_inpaint",
                                 min_width=0)
        send_extras = gr.Button("extras", icon=icon("upscale"), size="sm", elem_id=f"{tab}_send_to_extras",
                                min_width=0)
    infotext = gr.Textbox(label="Generation parameters", lines=4, interactive=False, elem_id=f"{tab}_infotext",
                          buttons=["copy"])
    texts, seeds, selected, job_id = gr.State([]), gr.State([]), gr.State(0), gr.State("")

    def on_select(evt: gr.SelectData, texts_v: list[str]) -> tuple[int, str]:
        index = int(evt.index) if isinstance(evt.index, int) else 0
        return index, texts_v[index] if 0 <= index < len(texts_v) else gr.skip()

    gallery.select(on_select, inputs=[texts], outputs=[selected, infotext], queue=False, show_progress="hidden",
                   api_visibility="private")
    return Results(gallery, status, infotext, texts, seeds, selected, job_id, send_img2img, send_inpaint, send_extras)


def run_job(ctx: "AppContext", submit: Callable[[], "Job"], *, previews: bool) -> Iterator[tuple[Any, ...]]:
    """Submit through ``submit`` and follow the job: yields (gallery, status, infotext, texts, seeds, job_id).

    A refused request and a failed job both end with the reason in the status line and in a
    ``gr.Error`` toast.
    """
    skip = gr.skip()
    try:
        job = submit()
    except Exception as exc:  # noqa: BLE001 - every refusal is shown as a readable message
        # in the status line (it stays) and in a toast (it draws the eye)
        yield skip, bar_html("failed", 0.0, f"Not started: {readable(exc)}"), skip, skip, skip, ""
        raise error(exc) from None
    yield skip, bar_html("queued", 0.0, "Queued…"), skip, skip, skip, job.id
    for tick in watch(ctx, job, previews=previews):
        shown = [(tick.preview, f"preview, step {tick.step}")] if tick.preview is not None else skip
        yield shown, tick.status, skip, skip, skip, skip
    status, ok = final_status(job)
    result = job.result
    if not ok and (result is None or not getattr(result, "images", None)):
        yield skip, status, skip, skip, skip, ""
        from modules.jobs.model import JobState

        if job.state is JobState.FAILED:
            raise error(job.error or "generation failed")
        return
    texts, seeds = list(result.infotexts), list(result.seeds)
    yield results_gallery(result), status, (texts[0] if texts else ""), texts, seeds, ""


def stop_job(ctx: "AppContext", job_id: str, request: gr.Request | None, *, skip: bool = False) -> str:
    """Interrupt (or skip the batch of) this session's job; a waiting job is cancelled."""
    job = ctx.queue.get(job_id) if job_id else None
    current = ctx.queue.current()
    if job is None:  # no job known to this page: its owner's running job, if any
        owner = owner_of(request)
        job = current if current is not None and current.owner == owner else None
    if job is None or job.done.is_set():
        return bar_html("done", 0.0, "Nothing to stop")
    if current is not None and current.id == job.id:
        if skip:
            job.control.skip_event.set()
            return bar_html("running", 0.0, "Skipping this batch…")
        job.control.interrupt_event.set()
        return bar_html("running", 0.0, "Interrupting…")
    try:
        ctx.queue.cancel(job.id)
    except Exception as exc:  # noqa: BLE001
        return bar_html("failed", 0.0, readable(exc))
    return bar_html("cancelled", 0.0, "Cancelled before it started")
