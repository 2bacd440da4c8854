"""The tool buttons of a generation tab: Paste (read parameters), Clear, PNG, styles, reuse seed,
Interrupt and Skip. Shared by txt2img and img2img."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterator

import gradio as gr

from webui.common import readable, status_html
from webui.params import Fields, PromptRow, SeedRow, paste_updates
from webui.results import Results, run_job, stop_job, wire_reattach, wire_zip
from webui.styles_editor import wire_style_editor

if TYPE_CHECKING:
    from modules.app_context import AppContext


def infotext_of_file(path: str | None) -> str:
    """The A1111 infotext stored in an image file ("" when it has none)."""
    if not path:
        return ""
    from PIL import Image, UnidentifiedImageError

    from modules.images.codec import read_infotext

    try:
        with Image.open(path) as image:
            return read_infotext(image) or ""
    except (OSError, UnidentifiedImageError, ValueError):
        return ""


#: the Clear button's check: an empty prompt is cleared at once, else only when the user says yes
CONFIRM_CLEAR_JS = ("(prompt, negative) => ((!prompt && !negative) || confirm('Delete prompt?'))"
                    " ? ['', ''] : [prompt, negative]")


def wire_page_load(ctx: "AppContext", demo: gr.Blocks, txt2img: Any, img2img: Any,
                   quick: dict[str, Any] | None = None, settings: Any = None) -> None:
    """What a page does when it (re)loads: apply the theme (``--theme``, else the ``theme`` setting); set the
    tabs' clip skip from the ``CLIP_stop_at_last_layers`` setting (A1111 has clip skip only as that setting;
    the quicksettings bar's clip skip sets both tabs' too); follow this user's running txt2img and img2img
    jobs into their tabs (progress survives a reload); show the settings in force in the Settings tab."""
    from modules.jobs.reattach import TAB_KINDS
    from webui.look import APPLY_THEME_JS, page_theme

    private = {"queue": False, "show_progress": "hidden", "api_visibility": "private"}
    theme = gr.Textbox(visible=False, elem_id="atelier_theme")
    demo.load(lambda: page_theme(ctx.flags.theme, ctx.settings.current.theme), outputs=[theme], **private).then(
        None, inputs=[theme], js=APPLY_THEME_JS, **private)
    clip = [tab.fields.components["clip_skip"] for tab in (txt2img, img2img) if "clip_skip" in tab.fields.components]
    if clip:
        demo.load(lambda: [ctx.settings.current.CLIP_stop_at_last_layers] * len(clip), outputs=clip, **private)
        widget = (quick or {}).get("CLIP_stop_at_last_layers")
        if widget is not None:
            widget.input(lambda value: [value] * len(clip), inputs=[widget], outputs=clip, **private)
    if settings is not None and settings.refresh is not None:  # the Settings tab shows the values in force
        demo.load(settings.refresh, outputs=settings.widgets, **private)
    for results in (txt2img.results, img2img.results):
        wire_reattach(ctx, demo, results, TAB_KINDS[results.tab], lambda: _previews(ctx))


def looks_like_infotext(text: str) -> bool:
    return any(line.strip().startswith("Steps:") for line in (text or "").splitlines())


def wire_tools(ctx: "AppContext", row: PromptRow, seed: SeedRow, fields: Fields, results: Results) -> None:
    outputs = [*fields.inputs, row.note]

    def paste(prompt: str, request: gr.Request) -> list[Any]:
        if not (prompt or "").strip():  # A1111: ↙ with an empty prompt restores the last generation
            from webui.recall import last_params_updates

            updates, note, found = last_params_updates(ctx, fields, request)
            return updates + [status_html(note, "ok" if found else "warn")]
        if not looks_like_infotext(prompt):
            return [gr.skip() for _ in fields.names] + [status_html(
                "Paste reads generation parameters: paste an infotext (with its 'Steps: ...' line) into the prompt "
                "box first, or use PNG", "warn")]
        updates, note = paste_updates(fields, prompt)
        return updates + [status_html(note, "ok")]

    def load_png(path: str | None) -> list[Any]:
        text = infotext_of_file(path)
        if not text:
            return [gr.skip() for _ in fields.names] + [status_html("That image has no generation parameters.",
                                                                    "warn")]
        updates, note = paste_updates(fields, text)
        return updates + [status_html(note, "ok")]

    row.paste.click(paste, inputs=[row.prompt], outputs=outputs, queue=False, show_progress="hidden",
                    api_visibility="private")
    row.load_png.upload(load_png, inputs=[row.load_png], outputs=outputs, queue=False, show_progress="hidden",
                        api_visibility="private")
    # Clear asks first, in the page (A1111's "Delete prompt?"); no server round trip
    row.clear.click(None, inputs=[row.prompt, row.negative], outputs=[row.prompt, row.negative],
                    js=CONFIRM_CLEAR_JS, queue=False, show_progress="hidden", api_visibility="private")
    if row.style_editor is not None:
        wire_style_editor(ctx, row.style_editor, row.styles, row.note)
    wire_zip(ctx, results)

    def apply_styles(names: list[str], prompt: str, negative: str) -> tuple[Any, Any, Any, str]:
        if ctx.styles is None or not names:
            return gr.skip(), gr.skip(), gr.skip(), status_html("Pick one or more styles first.", "warn")
        try:
            new_prompt, new_negative = ctx.styles.apply_styles(prompt or "", negative or "", names)
        except Exception as exc:  # noqa: BLE001 - unknown style names
            return gr.skip(), gr.skip(), gr.skip(), status_html(readable(exc), "error")
        return new_prompt, new_negative, [], status_html(f"Applied {', '.join(names)} to the prompts.", "ok")

    def save_style(name: str, prompt: str, negative: str) -> tuple[Any, Any, str]:
        if ctx.styles is None:
            return gr.skip(), gr.skip(), status_html("Styles are unavailable (styles.csv is unreadable).", "error")
        try:
            style = ctx.styles.save_style(name or "", prompt or "", negative or "")
        except Exception as exc:  # noqa: BLE001 - a bad name or an unwritable file
            return gr.skip(), gr.skip(), status_html(readable(exc), "error")
        return gr.update(choices=ctx.styles.names()), "", status_html(f"Saved style '{style.name}'.", "ok")

    row.apply_styles.click(apply_styles, inputs=[row.styles, row.prompt, row.negative],
                           outputs=[row.prompt, row.negative, row.styles, row.note], queue=False,
                           show_progress="hidden", api_visibility="private")
    row.save_style.click(save_style, inputs=[row.style_name, row.prompt, row.negative],
                         outputs=[row.styles, row.style_name, row.note], queue=False, show_progress="hidden",
                         api_visibility="private")

    def reuse_seed(index: int, seeds: list[int]) -> Any:
        if not seeds:
            return gr.skip()
        return seeds[index] if 0 <= index < len(seeds) else seeds[0]

    seed.reuse.click(reuse_seed, inputs=[results.selected, results.seeds], outputs=[seed.seed], queue=False,
                     show_progress="hidden", api_visibility="private")

    def interrupt(job_id: str, request: gr.Request) -> str:
        return stop_job(ctx, job_id, request)

    def skip(job_id: str, request: gr.Request) -> str:
        return stop_job(ctx, job_id, request, skip=True)

    row.interrupt.click(interrupt, inputs=[results.job_id], outputs=[results.status], queue=False,
                        show_progress="hidden", api_visibility="private")
    row.skip.click(skip, inputs=[results.job_id], outputs=[results.status], queue=False, show_progress="hidden",
                   api_visibility="private")


def wire_hires_again(ctx: "AppContext", results: Results, inputs: list[Any],
                     build_values: Callable[[tuple[Any, ...]], dict[str, Any]]) -> None:
    """✨ under the txt2img gallery: the selected image made again with the hires fix (its own parameters and
    seed, the tab's hires settings; :mod:`modules.generation.hires_again` says what exactly)."""
    if results.upscale is None:
        return

    def upscale(texts: list[str], index: int, request: gr.Request, *values: Any) -> Iterator[tuple[Any, ...]]:
        from modules.generation.hires_again import hires_request_values
        from modules.generation.requests import Txt2ImgRequest
        from modules.jobs.submit import submit_job
        from webui.common import owner_of

        def submit() -> Any:
            text = texts[index] if texts and 0 <= (index or 0) < len(texts) else ""
            req = Txt2ImgRequest(**hires_request_values(build_values(values), text))
            return submit_job(ctx, req, owner=owner_of(request), source="webui")

        yield from run_job(ctx, submit, previews=_previews(ctx))

    results.upscale.click(upscale, inputs=[results.texts, results.selected, *inputs], outputs=results.outputs,
                          concurrency_limit=None, show_progress="hidden", api_visibility="private")


def _previews(ctx: "AppContext") -> bool:
    from modules.generation.sampling.previews import preview_every  # torch: never at start-up

    return preview_every(ctx.settings.current) > 0
