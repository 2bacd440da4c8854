"""The page scripts' one way to ask the server something (webui/js/*.js): a hidden Gradio event.

A route of its own would sit outside the UI's login (``--gradio-auth``) and behind the API's; a Gradio
event is behind the UI's login like every other event of the page. The script writes a JSON question
into the hidden box ``#atelier_page_call``, clicks ``#atelier_page_call_button`` and reads the JSON
answer from ``#atelier_page_answer`` (the same ``id`` comes back). Questions (``op``):

- ``token_count`` ``{"text", "steps", "styles", "negative"}`` -> ``{"count", "limit", "text", "encoder",
  "over"}``: the prompt's tokens as A1111 counts them (:mod:`modules.generation.prompts.token_count`),
  with the tab's chosen styles applied to the prompt (or, with ``negative``, the negative prompt);
- ``options`` -> ``{"notification_audio", "notification_browser"}``: the settings the page acts on.

The scripts send a question when typing pauses (debounced), never one per key stroke.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import gradio as gr

if TYPE_CHECKING:
    from modules.app_context import AppContext
    from modules.generation.prompts.token_count import TokenCounter

#: the longest question read (characters): a prompt is counted up to token_count.MAX_CHARS anyway
MAX_QUESTION = 64_000


def answer(ctx: "AppContext", counter: "TokenCounter", question: str) -> str:
    """The JSON answer to one JSON question (bad questions get ``{"error": ...}``, never a traceback)."""
    try:
        data = json.loads((question or "")[:MAX_QUESTION])
    except ValueError:
        return json.dumps({"id": None, "error": "the question is not JSON"})
    if not isinstance(data, dict):
        return json.dumps({"id": None, "error": "the question is not a JSON object"})
    ident = data.get("id")
    op = data.get("op")
    try:
        if op == "token_count":
            steps = data.get("steps")
            steps = int(steps) if isinstance(steps, (int, float)) and 1 <= steps <= 10_000 else 20
            text = data.get("text")
            if not isinstance(text, str):
                raise ValueError("text must be a string")
            count = counter.count(_with_styles(ctx, text, data.get("styles"), data.get("negative") is True), steps)
            body: dict[str, Any] = {"count": count.count, "limit": count.limit, "text": count.text,
                                    "encoder": count.encoder, "over": count.over}
        elif op == "options":
            settings = ctx.settings.current
            body = {"notification_audio": settings.notification_audio,
                    "notification_browser": settings.notification_browser}
        else:
            raise ValueError(f"unknown question {op!r}")
    except Exception as exc:  # noqa: BLE001 - a count is a hint: the page shows "?" and the reason in a tooltip
        from webui.common import readable

        return json.dumps({"id": ident, "error": ctx.paths.scrub(readable(exc))})
    return json.dumps({"id": ident, **body})


def _with_styles(ctx: "AppContext", text: str, names: Any, negative: bool) -> str:
    """The prompt as it will be generated with the tab's chosen styles (A1111 counts them too); styles
    that are gone or unreadable are left out of the count."""
    if not isinstance(names, list) or not names or ctx.styles is None:
        return text
    try:
        prompt, negative_prompt = ctx.styles.apply_styles("" if negative else text, text if negative else "",
                                                          [str(name) for name in names])
    except Exception:  # noqa: BLE001 - an unknown style: the count of the text as typed
        return text
    return negative_prompt if negative else prompt


def build_page_channel(ctx: "AppContext") -> None:
    """The hidden question box, its button and the answer box (inside the page's Blocks)."""
    from modules.generation.prompts.token_count import TokenCounter, embedding_vector_counts

    def cache() -> Any:  # the jobs' embedding cache, looked up only when embedding files exist
        return ctx.addons.caches.embeddings if ctx.addons is not None else None

    counter = TokenCounter(lambda: ctx.models.active, ctx.paths.cache_dir,
                           vectors=embedding_vector_counts([ctx.paths.embeddings_dir], cache))
    with gr.Row(visible="hidden", elem_id="atelier_page_channel"):
        question = gr.Textbox(elem_id="atelier_page_call", visible="hidden", max_lines=1, show_label=False)
        ask = gr.Button("ask", elem_id="atelier_page_call_button", visible="hidden")
        reply = gr.Textbox(elem_id="atelier_page_answer", visible="hidden", max_lines=1, show_label=False)

    def event(text: str) -> str:
        return answer(ctx, counter, text)

    ask.click(event, inputs=[question], outputs=[reply], queue=False, show_progress="hidden",
              api_visibility="private")
