"""Editing prompt styles from the page (A1111's ✏️ style editor): save one's texts, rename, delete.

Thin rules over :class:`modules.generation.prompts.styles.StyleStore`, which keeps the CSV files: a
renamed style keeps its texts and takes its new name in the first styles file; a name already used by
another style is refused rather than overwritten.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modules.generation.prompts.styles import StyleError

if TYPE_CHECKING:
    from modules.generation.prompts.styles import PromptStyle, StyleStore


def rename_style(store: "StyleStore", old: str, new: str) -> "PromptStyle":
    """Give the style ``old`` the name ``new`` (its prompt texts unchanged)."""
    old, new = (old or "").strip(), (new or "").strip()
    style = store.get(old)
    if new == old:
        return style
    if new in store.names():
        raise StyleError(f"there is already a style named '{new}': delete it first or pick another name")
    renamed = store.save_style(new, style.prompt, style.negative_prompt)
    store.delete_style(old)
    return renamed


def edit_style(store: "StyleStore", name: str, prompt: str, negative_prompt: str) -> "PromptStyle":
    """Save ``name`` with these texts (a new name makes a new style)."""
    return store.save_style(name or "", prompt or "", negative_prompt or "")
