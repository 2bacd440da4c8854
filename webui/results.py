"""The results side of a generation tab: the gallery of the current results, the live progress bar,
the selected image's infotext, and the "send to" buttons (wired across tabs in :mod:`webui.app`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator

import gradio as gr

from webui.common import error, owner_of, readable
from webui.look import ICON_ONLY_CLASS, RESULT_CLASS, icon
from webui.progress import bar_html, final_status, results_gallery, watch

if TYPE_CHECKING:
    from modules.app_context import AppContext
    from modules.jobs.model import Job


#: the browser's memory of the job a tab follows (localStorage key; webui/js/reattach.js writes it)
STORAGE_KEY = "atelier_{tab}_job"
#: the job kinds whose batches get a grid (shown first, saved to outputs/<kind>-grids)
GRID_KINDS = ("txt2img", "img2img")


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
    remembered: Any = None  # hidden: at page load, the job this browser waited for (webui/js/reattach.js)
    upscale: Any = None     # ✨ hires upscale of the selected image (txt2img)
    zip: Any = None         # Zip of the shown images
    zip_file: Any = None
    tab: str = ""
    send_understand: Any = None  # the selected image to the Understand tab (webui/understand_tab.py)

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
        send_understand = gr.Button("understand", size="sm", elem_id=f"{tab}_send_to_understand", min_width=0)
        upscale = (gr.Button("", icon=icon("sparkles"), size="sm", elem_id=f"{tab}_upscale", min_width=40, scale=0,
                             elem_classes=[ICON_ONLY_CLASS]) if tab == "txt2img" else None)
        zip_button = gr.Button("", icon=icon("zip"), size="sm", elem_id=f"{tab}_zip", min_width=40, scale=0,
                               elem_classes=[ICON_ONLY_CLASS])
    zip_file = gr.File(label="Zip of the results", visible=False, interactive=False, elem_id=f"{tab}_zip_file")
    infotext = gr.Textbox(label="Generation parameters", lines=4, interactive=False, elem_id=f"{tab}_infotext",
                          buttons=["copy"])
    texts, seeds, selected, job_id = gr.State([]), gr.State([]), gr.State(0), gr.State("")
    remembered = gr.Textbox("", visible=False, elem_id=f"{tab}_remembered_job")

    def on_select(evt: gr.SelectData, texts_v: list[str]) -> tuple[int, str]:
        index = int(evt.index) if isinstance(evt.index, int) else 0
        return index, texts_v[index] if 0 <= index < len(texts_v) else gr.skip()

    gallery.select(on_select, inputs=[texts], outputs=[selected, infotext], queue=False, show_progress="hidden",
                   api_visibility="private")
    return Results(gallery, status, infotext, texts, seeds, selected, job_id, send_img2img, send_inpaint, send_extras,
                   remembered, upscale, zip_button, zip_file, tab, send_understand)


def _gallery_files(gallery: Any) -> list[str]:
    files: list[str] = []
    for item in gallery or []:
        first = item[0] if isinstance(item, (tuple, list)) else item
        path = first.get("path") if isinstance(first, dict) else first
        if isinstance(path, str):
            files.append(path)
    return files


def wire_zip(ctx: "AppContext", results: Results) -> None:
    """The Zip button: a zip of the gallery's files (in the page's upload cache), offered as a download."""

    def make_zip(gallery: Any) -> Any:
        from modules.gallery.zip_results import ZipError, zip_files

        cache = ctx.paths.gradio_cache_dir
        try:
            path = zip_files(_gallery_files(gallery), cache / "zips", allowed=[cache, ctx.paths.outputs_dir])
        except ZipError as exc:
            raise error(exc) from None
        return gr.update(value=str(path), visible=True)

    results.zip.click(make_zip, inputs=[results.gallery], outputs=[results.zip_file], api_visibility="private")


def _with_grid(ctx: "AppContext", job: "Job", items: list[Any], images: list[Any], texts: list[str],
               seeds: list[int]) -> tuple[list[Any], list[str], list[int], str]:
    """The gallery with the batch grid first (setting ``return_grid``) and the grid saved (``grid_save``);
    a grid that cannot be saved is said in the status line, never a failure."""
    from modules.gallery.batch_grid import make_grid, save_grid, wants_grid

    settings = ctx.settings.current
    if job.kind not in GRID_KINDS or getattr(job.request, "script", None) is not None:
        return items, texts, seeds, ""  # a folder batch has no grid; a script's run (X/Y/Z...) makes its own
    if not wants_grid(len(images), return_grid=settings.return_grid, grid_save=settings.grid_save):
        return items, texts, seeds, ""
    grid = make_grid(images)
    note = ""
    if settings.grid_save:
        try:
            save_grid(grid, ctx.paths.output_dir(f"{job.kind}-grids"), texts[0] if texts else "")
        except OSError as exc:
            note = f" (the grid was not saved: {ctx.paths.scrub(str(exc))})"
    if settings.return_grid:
        items = [(grid, "grid"), *items]
        texts, seeds = [texts[0] if texts else "", *texts], [seeds[0] if seeds else -1, *seeds]
    return items, texts, seeds, note


def _stored_outcome(ctx: "AppContext", job: "Job") -> Iterator[tuple[Any, ...]]:
    """A job that finished while no page watched it and whose pixels are no longer in memory: its saved
    images, read back from the outputs folder."""
    from PIL import Image

    from modules.jobs.model import JobState
    from modules.jobs.reattach import stored_images

    skip = gr.skip()
    if job.state is not JobState.SUCCEEDED:
        state = "failed" if job.state is JobState.FAILED else "cancelled"
        text = f"{job.state.value.capitalize()}: {job.error or 'stopped'}"
        yield skip, bar_html(state, 1.0, text, job.id), skip, skip, skip, ""
        return
    stored = stored_images(job, ctx.paths.outputs_dir)
    if not stored:
        yield skip, bar_html("done", 1.0, "Finished; its images are no longer in the outputs folder.", job.id), \
            skip, skip, skip, ""
        return
    images = []
    for item in stored:
        with Image.open(item.path) as image:
            images.append(image.copy())
    texts, seeds = [item.infotext for item in stored], [item.seed if item.seed is not None else -1 for item in stored]
    items = [(image, f"seed {seed}") for image, seed in zip(images, seeds)]
    if (ctx.settings.current.return_grid and len(images) > 1 and job.kind in GRID_KINDS
            and getattr(job.request, "script", None) is None):
        from modules.gallery.batch_grid import make_grid

        items, texts, seeds = [(make_grid(images), "grid"), *items], [texts[0], *texts], [seeds[0], *seeds]
    yield items, bar_html("done", 1.0, f"{len(stored)} image(s), finished while the page was away", job.id), \
        (texts[0] if texts else ""), texts, seeds, ""


def follow(ctx: "AppContext", job: "Job", *, previews: bool, toast: bool = True) -> Iterator[tuple[Any, ...]]:
    """Follow a submitted (or re-attached) job: yields (gallery, status, infotext, texts, seeds, job_id) until
    it has shown the result; ``toast``: a failed job also raises a ``gr.Error``."""
    from modules.jobs.model import JobState

    skip = gr.skip()
    if job.done.is_set() and job.result is None:
        yield from _stored_outcome(ctx, job)
        return
    if not job.done.is_set():
        from webui.progress import running_html

        yield skip, running_html(ctx, job), skip, skip, skip, job.id
    for tick in watch(ctx, job, previews=previews):
        shown = [(tick.preview, f"preview, step {tick.step}")] if tick.preview is not None else skip
        yield shown, tick.status, skip, skip, skip, skip
    status, ok = final_status(job)
    result = job.result
    if not ok and (result is None or not getattr(result, "images", None)):
        yield skip, status, skip, skip, skip, ""
        if toast and job.state is JobState.FAILED:
            raise error(job.error or "generation failed")
        return
    texts, seeds = list(result.infotexts), list(result.seeds)
    items, texts, seeds, note = _with_grid(ctx, job, results_gallery(result), list(result.images), texts, seeds)
    if note:
        status = status.replace("</span>", f"{note}</span>", 1)
    yield items, status, (texts[0] if texts else ""), texts, seeds, ""


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
    yield skip, bar_html("queued", 0.0, "Queued…", job.id), skip, skip, skip, job.id
    yield from follow(ctx, job, previews=previews)


def wire_reattach(ctx: "AppContext", demo: gr.Blocks, results: Results, kinds: tuple[str, ...],
                  previews: Callable[[], bool]) -> None:
    """On page load: follow this user's job of ``kinds`` that is still waiting or running (or show the one
    this browser waited for, if it finished while the page was away), then the next ones, until none is left
    (:func:`modules.jobs.reattach.job_to_reattach` chooses)."""

    def reattach(remembered: str, request: gr.Request) -> Iterator[tuple[Any, ...]]:
        from modules.jobs.reattach import job_to_reattach

        owner, seen = owner_of(request), set()
        job = job_to_reattach(ctx.queue, owner, kinds, (remembered or "").strip() or None)
        if job is None:
            yield tuple(gr.skip() for _ in results.outputs)
            return
        while job is not None:
            seen.add(job.id)
            yield from follow(ctx, job, previews=previews(), toast=False)
            job = job_to_reattach(ctx.queue, owner, kinds, None, exclude=seen)

    # the page's script hands over what the browser remembers; the server decides what to follow
    remembered_js = f"() => [localStorage.getItem('{STORAGE_KEY.format(tab=results.tab)}') || '']"
    demo.load(reattach, inputs=[results.remembered], outputs=results.outputs, js=remembered_js,
              concurrency_limit=None, show_progress="hidden", api_visibility="private")


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
            return bar_html("stopping", 0.0, "Skipping this batch…")
        job.control.interrupt_event.set()
        # not "running": this answer can reach the page after the job's own last line (page scripts
        # read data-state: the title, generate forever)
        return bar_html("stopping", 0.0, "Interrupting…")
    try:
        ctx.queue.cancel(job.id)
    except Exception as exc:  # noqa: BLE001
        return bar_html("failed", 0.0, readable(exc))
    return bar_html("cancelled", 0.0, "Cancelled before it started")
