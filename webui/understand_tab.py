"""The Understand tab: Caption, Ask, Extract, Check (on the image uploaded at the left), Chat (multi-turn,
its images kept in context and the chat in the data dir) and Batch (caption a folder into .txt files).

Thin: the requests are built by :mod:`modules.understanding.page`, submitted through
:func:`modules.jobs.submit.submit_job` and followed with a progress bar; an answer that streams
(:mod:`modules.understanding.streams`) appears in the page as it is generated. Image inputs are Gradio
uploads only (:mod:`webui.input_files` refuses anything else).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator

import gradio as gr

from webui.common import owner_of, readable, status_html
from webui.understand_search import build_search_section

if TYPE_CHECKING:
    from modules.app_context import AppContext
    from modules.jobs.model import Job

BATCH_COLUMNS = ["Image", "Status", "Caption"]


@dataclass
class UnderstandTab:
    """The tab's components the app wires to other tabs, and its handlers (the tests call them as the page's
    events do)."""

    image: Any                 # the image Caption, Ask, Extract and Check work on (send-to target)
    tabs: Any                  # the sub-tabs
    caption: Callable[..., Iterator[tuple[Any, ...]]]
    ask: Callable[..., Iterator[tuple[Any, ...]]]
    extract: Callable[..., Iterator[tuple[Any, ...]]]
    check: Callable[..., Iterator[tuple[Any, ...]]]
    chat_send: Callable[..., Iterator[tuple[Any, ...]]]
    chat_open: Callable[..., tuple[Any, ...]]
    chat_list: Callable[[], Any]
    batch: Callable[..., Iterator[tuple[Any, ...]]]
    batch_stop: Callable[..., str]
    classify: Any = None       # the Classify sub-tab's handlers (webui.understand_classify.ClassifyTab)
    search: Any = None         # the Search sub-tab (webui.understand_search.SearchSection)


def follow(ctx: "AppContext", build: Callable[[], Any], owner: str) -> Iterator[tuple[str, str, "Job | None"]]:
    """Submit the request ``build`` makes and follow the job: (status bar, the answer streamed so far, None)
    while it waits or runs, then (final status, the streamed text, the job). A refused request: its reason."""
    from modules.jobs.model import JobState
    from modules.jobs.submit import submit_job
    from webui.progress import bar_html, running_html

    try:
        job = submit_job(ctx, build(), owner=owner, source="webui")
    except Exception as exc:  # noqa: BLE001 - a refused request is said in the page
        yield bar_html("failed", 1.0, f"Not started: {ctx.paths.scrub(readable(exc))}"), "", None
        return
    streams = ctx.understanding.streams
    offset, text, last = 0, "", ("", "")
    try:
        while not job.done.is_set():
            pieces, _ = streams.read(job.id, offset, timeout=0.25)
            offset += len(pieces)
            text += "".join(pieces)
            shown = (running_html(ctx, job), text)
            if shown != last:
                last = shown
                yield shown[0], text, None
    finally:
        streams.discard(job.id)
    seconds = (job.finished_at or 0.0) - (job.started_at or job.finished_at or 0.0)
    if job.state is JobState.SUCCEEDED:
        yield bar_html("done", 1.0, f"Done in {max(seconds, 0):.1f} s", job.id), text, job
    elif job.state is JobState.FAILED:
        yield bar_html("failed", 1.0, f"Failed: {ctx.paths.scrub(job.error or 'unknown error')}", job.id), text, job
    else:
        yield bar_html("cancelled", 1.0, f"Stopped: {ctx.paths.scrub(job.error or 'cancelled')}", job.id), text, job


def _backend(ctx: "AppContext", elem_id: str, *, ocr: bool = True) -> Any:
    from modules.understanding.page import backend_choices, default_backend

    task = elem_id.split("_")[1]  # understand_<task>_backend: its Settings default (understanding_backend_<task>)
    return gr.Dropdown(backend_choices(ctx, ocr=ocr), value=default_backend(ctx, ocr=ocr, task=task), label="Backend",
                       elem_id=elem_id, info="default: offline; remote: the OpenAI-compatible service in Settings; "
                                         "local:<folder>: a model of models/VLM")


def _tag_options(prefix: str) -> tuple[Any, Any, Any, Any]:
    with gr.Accordion("Tag options (detail: tags)", open=False):
        with gr.Row():
            underscores = gr.Checkbox(False, label="Underscores between words", elem_id=f"{prefix}_underscores")
            escape = gr.Checkbox(True, label="Escape ( ) [ ]", elem_id=f"{prefix}_escape")
            max_tags = gr.Slider(1, 200, value=50, step=1, label="At most", elem_id=f"{prefix}_max_tags")
        blacklist = gr.Textbox(label="Leave out these tags (comma-separated, * wildcards)", lines=1,
                               elem_id=f"{prefix}_blacklist")
    return underscores, escape, blacklist, max_tags


def build_understand_tab(ctx: "AppContext") -> UnderstandTab:
    from modules.understanding import page

    with gr.Row(equal_height=False):
        with gr.Column(scale=2):
            image = gr.Image(label="Image (Caption, Ask, Extract, Check, Classify, Search)", type="filepath",
                             sources=["upload", "clipboard"], height=360, elem_id="understand_image")
        with gr.Column(scale=3):
            with gr.Tabs(elem_id="understand_tabs") as tabs:
                with gr.Tab("Caption", id="understand_caption"):
                    cap_detail = gr.Radio(["short", "detailed", "tags"], value="detailed", label="Detail",
                                          elem_id="understand_caption_detail")
                    cap_backend = _backend(ctx, "understand_caption_backend", ocr=False)
                    cap_prompt = gr.Textbox(label="Your own instruction (VLM backends only)", lines=1,
                                            elem_id="understand_caption_prompt")
                    cap_tags = _tag_options("understand_caption")
                    cap_run = gr.Button("Caption", variant="primary", elem_id="understand_caption_run")
                    cap_status = gr.HTML("", elem_id="understand_caption_status")
                    cap_out = gr.Textbox(label="Caption", lines=3, interactive=False, buttons=["copy"],
                                         elem_id="understand_caption_output")
                    cap_note = gr.Markdown("", elem_id="understand_caption_note")
                with gr.Tab("Ask", id="understand_ask"):
                    ask_q = gr.Textbox(label="Question", lines=2, elem_id="understand_ask_question")
                    ask_short = gr.Checkbox(False, label="Short answer (a word or a number)",
                                            elem_id="understand_ask_short")
                    ask_backend = _backend(ctx, "understand_ask_backend")
                    ask_run = gr.Button("Ask", variant="primary", elem_id="understand_ask_run")
                    ask_status = gr.HTML("", elem_id="understand_ask_status")
                    ask_out = gr.Textbox(label="Answer", lines=4, interactive=False, buttons=["copy"],
                                         elem_id="understand_ask_output")
                    ask_note = gr.Markdown("", elem_id="understand_ask_note")
                with gr.Tab("Extract", id="understand_extract"):
                    ex_preset = gr.Radio([*page.PRESETS, page.OWN_SCHEMA], value="receipt", label="What to extract",
                                         elem_id="understand_extract_preset")
                    ex_schema = gr.Code("", language="json", label="JSON Schema (for “my JSON Schema”)", lines=6,
                                        elem_id="understand_extract_schema")
                    ex_instr = gr.Textbox(label="Extra instructions (VLM backends only)", lines=1,
                                          elem_id="understand_extract_instructions")
                    ex_backend = _backend(ctx, "understand_extract_backend")
                    ex_run = gr.Button("Extract", variant="primary", elem_id="understand_extract_run")
                    ex_status = gr.HTML("", elem_id="understand_extract_status")
                    ex_note = gr.Markdown("", elem_id="understand_extract_note")
                    ex_json = gr.JSON(label="Result (valid against the schema)", elem_id="understand_extract_json")
                    ex_raw = gr.Textbox(label="Raw answer (shown when it is not valid)", lines=4, interactive=False,
                                        elem_id="understand_extract_raw")
                with gr.Tab("Check", id="understand_check"):
                    ck_text = gr.Textbox(label="What the image should show", lines=2, elem_id="understand_check_text")
                    ck_own = gr.Checkbox(False, label="Use the image's own prompt (from its infotext)",
                                         elem_id="understand_check_own")
                    ck_backend = _backend(ctx, "understand_check_backend", ocr=False)
                    ck_run = gr.Button("Check", variant="primary", elem_id="understand_check_run")
                    ck_status = gr.HTML("", elem_id="understand_check_status")
                    ck_out = gr.Markdown("", elem_id="understand_check_output")
                with gr.Tab("Chat", id="understand_chat"):
                    chat_id = gr.State("")
                    with gr.Row():
                        chat_pick = gr.Dropdown(_chat_choices(ctx), label="Saved chats", elem_id="understand_chat_saved",
                                                scale=3)
                        chat_open = gr.Button("Open", size="sm", elem_id="understand_chat_open", scale=0)
                        chat_new = gr.Button("New chat", size="sm", elem_id="understand_chat_new", scale=0)
                        chat_delete = gr.Button("Delete", size="sm", variant="stop", elem_id="understand_chat_delete",
                                                scale=0)
                    chat_model = gr.Dropdown(_chat_models(ctx), value=page.default_chat_model(ctx, _chat_models(ctx)),
                                             label="Model", elem_id="understand_chat_model")
                    chatbot = gr.Chatbot(label="Chat", height=320, elem_id="understand_chatbot")
                    chat_images = gr.Gallery(label="Images in this chat (in context)", columns=6, height=150,
                                             object_fit="contain", allow_preview=True, interactive=False,
                                             fit_columns=False, elem_id="understand_chat_images", format="png")
                    with gr.Row():
                        chat_image = gr.Image(label="Attach an image", type="filepath", sources=["upload", "clipboard"],
                                              height=140, elem_id="understand_chat_image", scale=1)
                        chat_text = gr.Textbox(label="Message", lines=3, elem_id="understand_chat_text", scale=3)
                    chat_send = gr.Button("Send", variant="primary", elem_id="understand_chat_send")
                    chat_status = gr.HTML("", elem_id="understand_chat_status")
                with gr.Tab("Batch", id="understand_batch"):
                    bt_folder = gr.Textbox(label="Folder (under the data dir or an --allowed-dir folder)", lines=1,
                                           elem_id="understand_batch_folder")
                    with gr.Row():
                        bt_detail = gr.Radio(["short", "detailed", "tags"], value="tags", label="Detail",
                                             elem_id="understand_batch_detail")
                        bt_limit = gr.Number(0, label="At most (0: all)", precision=0, minimum=0,
                                             elem_id="understand_batch_limit")
                        bt_overwrite = gr.Checkbox(False, label="Overwrite existing .txt",
                                                   elem_id="understand_batch_overwrite")
                    bt_backend = _backend(ctx, "understand_batch_backend", ocr=False)
                    bt_prompt = gr.Textbox(label="Your own instruction (VLM backends only)", lines=1,
                                           elem_id="understand_batch_prompt")
                    bt_tags = _tag_options("understand_batch")
                    with gr.Row():
                        bt_preview = gr.Button("Preview (writes nothing)", elem_id="understand_batch_preview")
                        bt_write = gr.Button("Caption and write .txt", variant="primary",
                                             elem_id="understand_batch_write")
                        bt_stop = gr.Button("Stop", variant="stop", elem_id="understand_batch_stop")
                    bt_status = gr.HTML("", elem_id="understand_batch_status")
                    bt_table = gr.Dataframe(headers=BATCH_COLUMNS, value=None, interactive=False, wrap=True,
                                            elem_id="understand_batch_table")
                from webui.understand_classify import build_classify_tab

                classify_tab = build_classify_tab(ctx, image, follow)
                with gr.Tab("Search", id="understand_search"):
                    search_section = build_search_section(ctx, image, follow)

    # -- handlers -------------------------------------------------------------------------------------------
    def caption(img: Any, detail: str, backend: str, prompt: str, underscores: bool, escape: bool, blacklist: str,
                max_tags: float, request: gr.Request | None = None) -> Iterator[tuple[Any, ...]]:
        build = lambda: page.caption_request(img, detail, backend, prompt, underscores, escape,  # noqa: E731
                                             blacklist, max_tags)
        for status, text, job in follow(ctx, build, owner_of(request)):
            if job is not None and job.result is not None:
                out, note = page.caption_view(job.result)
                yield status, out, note
            else:
                yield status, text, gr.skip()

    def ask(img: Any, question: str, short: bool, backend: str, request: gr.Request | None = None
            ) -> Iterator[tuple[Any, ...]]:
        from modules.understanding.tasks.ask import AskRequest

        build = lambda: AskRequest(images=[page.file_b64(img)], question=(question or "").strip(),  # noqa: E731
                                   short_answer=bool(short), backend=backend or None)
        for status, text, job in follow(ctx, build, owner_of(request)):
            if job is not None and job.result is not None:
                yield status, job.result.answer, page.run_note(job.result.run)
            else:
                yield status, text, gr.skip()

    def extract(img: Any, preset: str, schema: str, instructions: str, backend: str,
                request: gr.Request | None = None) -> Iterator[tuple[Any, ...]]:
        build = lambda: page.extract_request(img, preset, schema, instructions, backend)  # noqa: E731
        for status, text, job in follow(ctx, build, owner_of(request)):
            if job is not None and job.result is not None:
                data, raw, note = page.extract_view(job.result)
                yield status, status_html(note, "ok" if job.result.valid else "error"), data, raw
            else:
                yield status, gr.skip(), None, text

    def check(img: Any, text: str, own: bool, backend: str, request: gr.Request | None = None
              ) -> Iterator[tuple[Any, ...]]:
        from modules.understanding.tasks.check import CheckRequest

        def build() -> CheckRequest:
            if own:
                return CheckRequest(image=page.file_b64(img), from_infotext=True, backend=backend or None)
            return CheckRequest(image=page.file_b64(img), text=(text or "").strip() or None, backend=backend or None)

        for status, streamed, job in follow(ctx, build, owner_of(request)):
            if job is not None and job.result is not None:
                yield status, page.check_view(job.result)
            else:
                yield status, streamed

    def chat_list() -> Any:
        return gr.update(choices=_chat_choices(ctx))

    def chat_view(chat: Any) -> tuple[list[dict[str, str]], list[Any]]:
        from PIL import Image

        store = ctx.understanding.chats
        messages, images = [], []
        for message in chat.messages:
            marks = " ".join(f"[image {len(images) + i + 1}]" for i in range(len(message.images)))
            for name in message.images:
                with Image.open(store.image(name)) as opened:
                    images.append(opened.copy())
            messages.append({"role": message.role, "content": (marks + "\n" + message.text).strip()})
        return messages, images

    def chat_open_(chosen: str) -> tuple[Any, ...]:
        from modules.understanding.chat_store import ChatNotFound

        try:
            chat = ctx.understanding.chats.load(chosen or "")
        except ChatNotFound as exc:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), status_html(str(exc), "error")
        messages, images = chat_view(chat)
        model = chat.model if chat.model in _chat_models(ctx) else gr.skip()
        return chat.id, messages, images, model, status_html(f"Opened “{chat.title or chat.id}”", "ok")

    def chat_new_() -> tuple[Any, ...]:
        return "", [], [], "", status_html("A new chat: it is saved with its first message", "info")

    def chat_delete_(chosen: str) -> tuple[Any, ...]:
        from modules.understanding.chat_store import ChatNotFound

        try:
            ctx.understanding.chats.delete(chosen or "")
        except ChatNotFound as exc:
            return gr.skip(), status_html(str(exc), "error")
        return chat_list(), status_html("Chat deleted", "ok")

    def chat_send_(current: str, model: str, img: Any, text: str, request: gr.Request | None = None
                   ) -> Iterator[tuple[Any, ...]]:
        from PIL import Image

        from modules.understanding.chat_store import ChatNotFound
        from modules.understanding.tasks.chat import ChatRequest

        store = ctx.understanding.chats
        if not (text or "").strip() and not img:
            yield current, gr.skip(), gr.skip(), gr.skip(), gr.skip(), status_html("Type a message first", "warn"), \
                gr.skip()
            return
        try:
            chat = store.load(current) if current else store.new(model or "")
        except ChatNotFound as exc:
            yield "", gr.skip(), gr.skip(), gr.skip(), gr.skip(), status_html(str(exc), "error"), gr.skip()
            return
        chat.model = model or chat.model
        pictures = []
        if img:
            with Image.open(img) as opened:
                pictures.append(opened.convert("RGB"))
        store.add_message(chat, "user", (text or "").strip(), pictures)
        messages, images = chat_view(chat)
        build = lambda: ChatRequest(model=chat.model, messages=store.request_messages(chat))  # noqa: E731
        for status, streamed, job in follow(ctx, build, owner_of(request)):
            if job is None:
                yield (chat.id if current else "", messages + [{"role": "assistant", "content": streamed or "…"}],
                       images, gr.skip(), gr.skip(), status, gr.skip())
                continue
            if job.result is None:  # failed: the message is taken back so it can be sent again
                store.pop_message(chat)
                yield current, chat_view(chat)[0], chat_view(chat)[1], gr.skip(), gr.skip(), status, gr.skip()
                return
            store.add_message(chat, "assistant", job.result.text)
            store.save(chat)
            messages, images = chat_view(chat)
            yield chat.id, messages, images, None, "", status, chat_list()
        if not chat.messages or chat.messages[-1].role != "assistant":  # refused before it started
            store.pop_message(chat)
            yield current, *chat_view(chat), gr.skip(), gr.skip(), status, gr.skip()

    def batch(folder: str, preview: bool, overwrite: bool, limit: float, detail: str, backend: str, prompt: str,
              underscores: bool, escape: bool, blacklist: str, max_tags: float,
              request: gr.Request | None = None) -> Iterator[tuple[Any, ...]]:
        build = lambda: page.batch_request(folder, preview, overwrite, limit, detail, backend, prompt,  # noqa: E731
                                           underscores, escape, blacklist, max_tags)
        for status, _, job in follow(ctx, build, owner_of(request)):
            if job is None:
                yield status, gr.skip()
                continue
            if job.result is not None:
                kind = "interrupted" if job.result.interrupted else "done"
                from webui.progress import bar_html

                yield bar_html(kind, 1.0, job.result.text(), job.id), page.batch_rows(job.result)
            else:
                yield status, None

    def batch_preview(*values: Any, request: gr.Request | None = None) -> Iterator[tuple[Any, ...]]:
        folder, overwrite, limit, *rest = values
        yield from batch(folder, True, overwrite, limit, *rest, request=request)

    def batch_write(*values: Any, request: gr.Request | None = None) -> Iterator[tuple[Any, ...]]:
        folder, overwrite, limit, *rest = values
        yield from batch(folder, False, overwrite, limit, *rest, request=request)

    def batch_stop(request: gr.Request | None = None) -> str:
        from webui.results import stop_job

        owner = owner_of(request)
        running = [j for j in ctx.queue.list_jobs(limit=50) if j.kind == "understand_batch_caption"
                   and j.owner == owner and not j.state.finished]
        return stop_job(ctx, running[0].id if running else "", request)

    # -- events ---------------------------------------------------------------------------------------------
    cap_run.click(caption, inputs=[image, cap_detail, cap_backend, cap_prompt, *cap_tags],
                  outputs=[cap_status, cap_out, cap_note], api_visibility="private", show_progress="hidden")
    ask_run.click(ask, inputs=[image, ask_q, ask_short, ask_backend], outputs=[ask_status, ask_out, ask_note],
                  api_visibility="private", show_progress="hidden")
    ex_run.click(extract, inputs=[image, ex_preset, ex_schema, ex_instr, ex_backend],
                 outputs=[ex_status, ex_note, ex_json, ex_raw], api_visibility="private", show_progress="hidden")
    ck_run.click(check, inputs=[image, ck_text, ck_own, ck_backend], outputs=[ck_status, ck_out],
                 api_visibility="private", show_progress="hidden")
    chat_outputs = [chat_id, chatbot, chat_images, chat_image, chat_text, chat_status, chat_pick]
    chat_send.click(chat_send_, inputs=[chat_id, chat_model, chat_image, chat_text], outputs=chat_outputs,
                    api_visibility="private", show_progress="hidden")
    chat_open.click(chat_open_, inputs=[chat_pick], outputs=[chat_id, chatbot, chat_images, chat_model, chat_status],
                    api_visibility="private")
    chat_new.click(chat_new_, outputs=[chat_id, chatbot, chat_images, chat_text, chat_status], api_visibility="private")
    chat_delete.click(chat_delete_, inputs=[chat_pick], outputs=[chat_pick, chat_status], api_visibility="private")
    chat_pick.focus(chat_list, outputs=[chat_pick], queue=False, api_visibility="private", show_progress="hidden")
    batch_inputs = [bt_folder, bt_overwrite, bt_limit, bt_detail, bt_backend, bt_prompt, *bt_tags]
    bt_preview.click(batch_preview, inputs=batch_inputs, outputs=[bt_status, bt_table], api_visibility="private",
                     show_progress="hidden")
    bt_write.click(batch_write, inputs=batch_inputs, outputs=[bt_status, bt_table], api_visibility="private",
                   show_progress="hidden")
    bt_stop.click(batch_stop, outputs=[bt_status], api_visibility="private", queue=False)
    return UnderstandTab(image, tabs, caption, ask, extract, check, chat_send_, chat_open_, chat_list, batch,
                         batch_stop, classify_tab, search_section)


def _chat_models(ctx: "AppContext") -> list[str]:
    from modules.understanding.tasks.chat import served_models

    return served_models(ctx)


def wire_send_to_understand(tabs: Any, understand: UnderstandTab, galleries: tuple[Any, ...], history: Any) -> None:
    """"understand" under the result galleries and "Send to Understand" in History: the selected image (a file
    the studio already showed, so a PNG keeps its infotext) into the Understand tab's image."""
    from webui.common import error

    def from_gallery(gallery: Any, index: int) -> tuple[Any, Any, Any]:
        picture = gallery_pick(gallery, index)
        if picture is None:
            raise error("Generate an image first, then send it.")
        return picture, gr.Tabs(selected="understand_caption"), gr.Tabs(selected="understand")

    def from_history(picture: Any) -> tuple[Any, Any, Any]:
        if picture is None:
            raise error("Pick an image first.")
        return picture, gr.Tabs(selected="understand_caption"), gr.Tabs(selected="understand")

    outputs = [understand.image, understand.tabs, tabs]
    for results in galleries:
        if getattr(results, "send_understand", None) is not None:
            results.send_understand.click(from_gallery, inputs=[results.gallery, results.selected], outputs=outputs,
                                          api_visibility="private")
    if getattr(history, "send_understand", None) is not None:
        history.send_understand.click(from_history, inputs=[history.image], outputs=outputs, api_visibility="private")


def _chat_choices(ctx: "AppContext") -> list[tuple[str, str]]:
    return [(f"{c.title} · {c.messages} message(s)", c.id) for c in ctx.understanding.chats.list()]


def gallery_pick(gallery: Any, index: int | None) -> Any:
    """The file of the selected (or first) item of a gallery value, as the studio showed it (None: empty)."""
    if not gallery:
        return None
    item = gallery[index] if index is not None and 0 <= index < len(gallery) else gallery[0]
    picture = item[0] if isinstance(item, (tuple, list)) else item
    if isinstance(picture, dict):
        picture = picture.get("path") or (picture.get("image") or {}).get("path")
    return getattr(picture, "path", picture)
