"""The style editor under a tab's styles (A1111's ✏️): pick a style, edit its prompt and negative prompt,
save, rename or delete it (delete asks first). The rules are :mod:`modules.generation.prompts.style_edit`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gradio as gr

from webui.common import readable, status_html

if TYPE_CHECKING:
    from modules.app_context import AppContext


@dataclass
class StyleEditor:
    pick: Any
    name: Any
    prompt: Any
    negative: Any
    save: Any
    rename: Any
    delete: Any
    section: Any = None


def build_style_editor(ctx: "AppContext", tab: str) -> StyleEditor:
    names = ctx.styles.names() if ctx.styles is not None else []
    with gr.Accordion("Edit styles", open=False, elem_id=f"{tab}_style_editor",
                      visible=ctx.styles is not None) as section:
        pick = gr.Dropdown(names, value=None, label="Style", elem_id=f"{tab}_style_edit_pick")
        name = gr.Textbox(label="Name (type a new one, then Rename)", max_lines=1, elem_id=f"{tab}_style_edit_name")
        prompt = gr.Textbox(label="Prompt", lines=2, elem_id=f"{tab}_style_edit_prompt")
        negative = gr.Textbox(label="Negative prompt", lines=2, elem_id=f"{tab}_style_edit_neg")
        with gr.Row():
            save = gr.Button("Save", size="sm", min_width=0, elem_id=f"{tab}_style_edit_save")
            rename = gr.Button("Rename", size="sm", min_width=0, elem_id=f"{tab}_style_edit_rename")
            delete = gr.Button("Delete", size="sm", min_width=0, variant="stop", elem_id=f"{tab}_style_edit_delete")
    return StyleEditor(pick, name, prompt, negative, save, rename, delete, section)


def wire_style_editor(ctx: "AppContext", editor: StyleEditor, styles_dropdown: Any, note: Any) -> None:
    """Wire the editor; every change also refreshes the tab's styles list and says what happened in ``note``."""
    if ctx.styles is None:
        return
    store = ctx.styles

    def refreshed(keep: str | None) -> tuple[Any, Any]:
        choices = store.names()
        return gr.update(choices=choices, value=keep if keep in choices else None), gr.update(choices=choices)

    def show(name: str) -> tuple[Any, Any, Any]:
        if not name:
            return "", "", ""
        try:
            style = store.get(name)
        except Exception as exc:  # noqa: BLE001 - a style removed from the file meanwhile
            return gr.skip(), gr.skip(), gr.skip()
        return style.name, style.prompt, style.negative_prompt

    def save(name: str, new_name: str, prompt: str, negative: str) -> tuple[Any, ...]:
        from modules.generation.prompts.style_edit import edit_style

        target = (name or new_name or "").strip()
        try:
            style = edit_style(store, target, prompt, negative)
        except Exception as exc:  # noqa: BLE001 - a bad name or an unwritable file
            return gr.skip(), gr.skip(), status_html(readable(exc), "error")
        return (*refreshed(style.name), status_html(f"Saved style '{style.name}'.", "ok"))

    def rename(name: str, new_name: str) -> tuple[Any, ...]:
        from modules.generation.prompts.style_edit import rename_style

        try:
            style = rename_style(store, name, new_name)
        except Exception as exc:  # noqa: BLE001 - unknown style, a taken or bad name
            return gr.skip(), gr.skip(), status_html(readable(exc), "error")
        return (*refreshed(style.name), status_html(f"Renamed '{name}' to '{style.name}'.", "ok"))

    def delete(name: str) -> tuple[Any, ...]:
        if not name:  # none picked, or the user said no
            return gr.skip(), gr.skip(), gr.skip()
        try:
            store.delete_style(name)
        except Exception as exc:  # noqa: BLE001
            return gr.skip(), gr.skip(), status_html(readable(exc), "error")
        return (*refreshed(None), status_html(f"Deleted style '{name}'.", "ok"))

    private = {"queue": False, "show_progress": "hidden", "api_visibility": "private"}
    # opening the editor lists the styles as the files have them now (saved from another tab or page)
    if editor.section is not None:
        editor.section.expand(lambda: gr.update(choices=store.names()), outputs=[editor.pick], **private)
    outputs = [editor.pick, styles_dropdown, note]
    editor.pick.input(show, inputs=[editor.pick], outputs=[editor.name, editor.prompt, editor.negative], **private)
    editor.save.click(save, inputs=[editor.pick, editor.name, editor.prompt, editor.negative], outputs=outputs,
                      **private)
    editor.rename.click(rename, inputs=[editor.pick, editor.name], outputs=outputs, **private)
    # deleting asks first, in the page (A1111 asks too); a refusal sends no name and changes nothing
    editor.delete.click(delete, inputs=[editor.pick], outputs=outputs,
                        js="(name) => (name && confirm(`Delete the style '${name}'?`)) ? [name] : ['']", **private)
