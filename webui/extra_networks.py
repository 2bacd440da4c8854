"""The extra networks browser under the prompts of txt2img and img2img (A1111's "Extra networks" panel):
cards for LoRA, embeddings, checkpoints and VAEs with their pictures, search, sub-folder, sort and refresh,
and a metadata editor. All logic is in :mod:`modules.models.extra_networks`; this module lays it out.

A click on a LoRA or embedding card is handled in the page (``webui/js/extra_networks.js``): the card's
text goes into the prompt box of the tab that was focused last (the positive prompt by default), and a
second click takes it out again, as in A1111. Clicks that need the server (edit a card's metadata,
switch the checkpoint, pick the VAE) are written as JSON into the tab's hidden box
``#<tab>_en_action`` and sent with the hidden button ``#<tab>_en_action_go``.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import gradio as gr

from webui.common import readable, status_html
from webui.look import ICON_ONLY_CLASS, icon

if TYPE_CHECKING:
    from modules.app_context import AppContext
    from modules.models.extra_networks import Card, ExtraNetworks
    from webui.params import PromptRow
    from webui.results import Results

CARDS_CSS = Path(__file__).resolve().parent / "extra_networks.css"
ALL_FOLDERS = "All folders"
#: what a card without a picture shows
PLACEHOLDERS = {"lora": "LoRA", "embedding": "TI", "checkpoint": "Model", "vae": "VAE"}
SORT_LABELS = {"Name": "name", "Date": "date", "Size": "size"}
#: the most cards one panel shows (search or pick a folder to see the others)
MAX_CARDS = 400
_PENCIL = ('<svg viewBox="0 0 24 24" width="16" height="16" aria-hidden="true"><path fill="currentColor" '
           'd="M3 17.25V21h3.75L17.8 9.94l-3.75-3.75L3 17.25zm17.7-10.2a1 1 0 0 0 0-1.41l-2.34-2.34a1 1 0 0 '
           '0-1.41 0l-1.83 1.83 3.75 3.75 1.83-1.83z"/></svg>')


@dataclass
class ExtraNetworksPanel:
    panel: Any
    kind: Any
    cards: Any
    use_results: Callable[["Results"], None]  # wires "Use the selected result as preview" to the tab's gallery


def _kind_of(label: str) -> str:
    from modules.models.extra_networks import KIND_LABELS

    return next((kind for kind, text in KIND_LABELS.items() if text == label), "lora")


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(size)


def _card_html(networks: "ExtraNetworks", card: "Card") -> str:
    metadata, _ = networks.user_metadata(card, guess_version=False)  # the card needs no sd version
    action = {"lora": "insert", "embedding": "insert", "checkpoint": "checkpoint", "vae": "vae"}[card.kind]
    picture = networks.thumbnail_data_uri(card)
    image = (f'<img src="{picture}" alt="" loading="lazy">' if picture
             else f'<div class="atelier-en-placeholder">{PLACEHOLDERS[card.kind]}</div>')
    label = card.name if card.kind != "checkpoint" else card.id
    description = metadata.description.strip()
    when = datetime.fromtimestamp(card.mtime).strftime("%Y-%m-%d") if card.mtime else ""
    title = description or card.id
    attributes = {"class": "atelier-en-card", "data-kind": card.kind, "data-id": card.id, "data-action": action,
                  "data-name": card.name, "data-prompt": networks.prompt_text(card, metadata),
                  "data-negative": networks.negative_text(card, metadata), "title": title,
                  "role": "button", "tabindex": "0"}
    attrs = " ".join(f'{k}="{html.escape(v, quote=True)}"' for k, v in attributes.items())
    return (f"<div {attrs}>{image}"
            f'<button type="button" class="atelier-en-edit" title="Edit the metadata of {html.escape(card.id)}" '
            f'aria-label="Edit metadata">{_PENCIL}</button>'
            f'<div class="atelier-en-label"><span class="atelier-en-name">{html.escape(label)}</span>'
            f'<span class="atelier-en-facts">{_human(card.size)} · {when}</span>'
            + (f'<span class="atelier-en-desc">{html.escape(description[:160])}</span>' if description else "")
            + "</div></div>")


def cards_html(networks: "ExtraNetworks", tab: str, kind: str, cards: list["Card"], *, filtered: bool = False) -> str:
    """The cards of one kind as the panel's HTML (every value escaped); ``filtered``: a search or a folder
    chose them (an empty result then says so)."""
    from modules.models.extra_networks import KIND_LABELS

    if not cards and filtered:
        body = (f'<div class="atelier-en-empty">No {html.escape(KIND_LABELS[kind])} matches the search and the '
                "folder.</div>")
    elif not cards:
        where = ", ".join(networks.paths.shown(p) for p in networks.roots(kind))
        body = (f'<div class="atelier-en-empty">No {html.escape(KIND_LABELS[kind])} found. Put files in '
                f"{html.escape(where)} and press Refresh.</div>")
    else:
        shown = cards[:MAX_CARDS]
        body = "".join(_card_html(networks, card) for card in shown)
        if len(cards) > len(shown):
            body += (f'<div class="atelier-en-empty">{len(shown)} of {len(cards)} shown: search or pick a folder '
                     "to see the others.</div>")
    return f'<div class="atelier-en-cards" data-atelier-en-tab="{html.escape(tab)}" data-kind="{kind}">{body}</div>'


def _training_html(training: dict[str, str]) -> str:
    if not training:
        return '<div class="atelier-en-empty">No training metadata in this file.</div>'
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in training.items())
    return f'<table class="atelier-en-training">{rows}</table>'


def build_extra_networks(ctx: "AppContext", tab: str, row: "PromptRow") -> ExtraNetworksPanel:
    """The panel (closed until opened) below the prompt row of ``tab``."""
    from modules.models.extra_networks import KIND_LABELS, ExtraNetworks
    from modules.models.network_metadata import SD_VERSIONS

    networks = ExtraNetworks(ctx.paths, ctx.catalog)
    with gr.Accordion("Extra networks", open=False, elem_id=f"{tab}_extra_networks",
                      elem_classes=["atelier-en"]) as panel:
        with gr.Row(equal_height=False):
            kind = gr.Radio(list(KIND_LABELS.values()), value=KIND_LABELS["lora"], show_label=False,
                            elem_id=f"{tab}_en_kind", scale=4, container=False)
            search = gr.Textbox(placeholder="Search", show_label=False, elem_id=f"{tab}_en_search", max_lines=1,
                                scale=2, container=False)
            folder = gr.Dropdown([ALL_FOLDERS], value=ALL_FOLDERS, show_label=False, elem_id=f"{tab}_en_folder",
                                 scale=1, container=False)
            sort = gr.Dropdown(list(SORT_LABELS), value="Name", show_label=False, elem_id=f"{tab}_en_sort",
                               scale=1, min_width=90, container=False)
            descending = gr.Checkbox(label="Descending", value=False, elem_id=f"{tab}_en_descending", scale=0,
                                     min_width=120, container=False)
            refresh = gr.Button("", icon=icon("refresh"), elem_id=f"{tab}_en_refresh", scale=0, min_width=48,
                                elem_classes=[ICON_ONLY_CLASS])
        status = gr.HTML("", elem_id=f"{tab}_en_status")
        cards = gr.HTML("", elem_id=f"{tab}_en_cards", css_template=CARDS_CSS.read_text(encoding="utf-8"),
                        js_on_load=None)
        with gr.Group(visible=False, elem_id=f"{tab}_en_editor") as editor:
            editor_title = gr.HTML("", elem_id=f"{tab}_en_editor_title")
            with gr.Row():
                description = gr.Textbox(label="Description", lines=2, elem_id=f"{tab}_en_description", scale=2)
                activation = gr.Textbox(label="Activation text", lines=2, elem_id=f"{tab}_en_activation", scale=2,
                                        info="added after the LoRA's tag")
                negative = gr.Textbox(label="Negative text", lines=2, elem_id=f"{tab}_en_negative", scale=2,
                                      info="a LoRA's: added to the negative prompt")
            with gr.Row():
                weight = gr.Number(label="Preferred weight", value=0, minimum=-10, maximum=10, step=0.05,
                                   elem_id=f"{tab}_en_weight", info="0: the default weight (1)")
                sd_version = gr.Dropdown(list(SD_VERSIONS), value="Unknown", label="SD version",
                                         elem_id=f"{tab}_en_sd_version")
            notes = gr.Textbox(label="Notes", lines=3, elem_id=f"{tab}_en_notes")
            with gr.Accordion("Training metadata (from the file, read-only)", open=False):
                training = gr.HTML("", elem_id=f"{tab}_en_training")
            with gr.Row():
                save = gr.Button("Save", variant="primary", elem_id=f"{tab}_en_save", size="sm")
                replace_preview = gr.Button("Use the selected result as its picture", icon=icon("image"),
                                            elem_id=f"{tab}_en_replace_preview", size="sm")
                close = gr.Button("Close", elem_id=f"{tab}_en_close", size="sm")
        editing = gr.State(None)  # (kind, id) of the card being edited
        action = gr.Textbox(visible="hidden", elem_id=f"{tab}_en_action", max_lines=1, show_label=False)
        action_go = gr.Button("go", visible="hidden", elem_id=f"{tab}_en_action_go")

    view_inputs = [kind, search, folder, sort, descending]

    def render(kind_label: str, query: str, folder_v: str, sort_label: str, desc: bool) -> tuple[str, Any]:
        which = _kind_of(kind_label)
        folders = networks.folders(which)
        chosen = folder_v if folder_v in folders else ""
        found = networks.cards(which, search=query or "", folder=chosen, sort=SORT_LABELS.get(sort_label, "name"),
                               descending=bool(desc))
        return (cards_html(networks, tab, which, found, filtered=bool((query or "").strip() or chosen)),
                gr.update(choices=[ALL_FOLDERS, *folders], value=chosen or ALL_FOLDERS))

    def do_refresh(*values: Any) -> tuple[str, Any, str]:
        if _kind_of(values[0]) == "checkpoint":
            ctx.catalog.refresh()
        return (*render(*values), "")

    def on_action(text: str, request: gr.Request) -> tuple[Any, ...]:
        """edit / checkpoint / vae sent by the page script: (status, editor, title, fields..., training, editing)."""
        skip_editor = [gr.skip()] * 10
        try:
            data = json.loads(text or "{}")
            if not isinstance(data, dict):
                raise ValueError("the page sent an action that is not a JSON object")
            which, card_id, what = str(data.get("kind", "")), str(data.get("id", "")), data.get("do")
            card = networks.find(which, card_id)
        except (ValueError, LookupError) as exc:
            return (status_html(readable(exc), "error"), *skip_editor)
        if what == "edit":
            metadata, note = networks.user_metadata(card)
            title = f"<h4>{html.escape(card.name)} <small>({html.escape(ctx.paths.shown(card.path))})</small></h4>"
            message = status_html(note, "warn") if note else ""
            return (message, gr.update(visible=True), title, metadata.description, metadata.activation_text,
                    metadata.negative_text, metadata.preferred_weight, metadata.sd_version, metadata.notes,
                    _training_html(networks.training_metadata(card)), (card.kind, card.id))
        if what == "checkpoint":
            return (_switch(ctx, card, request), *skip_editor)
        if what == "vae":
            try:
                ctx.settings.update({"sd_vae": card.path.name})
            except Exception as exc:  # noqa: BLE001 - shown to the user
                return (status_html(readable(exc), "error"), *skip_editor)
            return (status_html(f"VAE: {card.path.name} (used from the next generation)", "ok"), *skip_editor)
        return (status_html(f"unknown action {what!r}", "error"), *skip_editor)

    def on_save(target: Any, description_v: str, activation_v: str, negative_v: str, weight_v: Any, version_v: str,
                notes_v: str, *values: Any) -> tuple[Any, ...]:
        from modules.models.network_metadata import MetadataError, UserMetadata

        if not target:
            return status_html("Pick a card to edit first (the pencil on a card).", "warn"), gr.skip(), gr.skip(), \
                gr.skip()
        try:
            card = networks.find(*target)
            metadata = UserMetadata(description=description_v or "", activation_text=activation_v or "",
                                    negative_text=negative_v or "", preferred_weight=float(weight_v or 0), sd_version=version_v or "Unknown",
                                    notes=notes_v or "")
            path = networks.save_user_metadata(card, metadata)
        except (ValueError, LookupError, MetadataError) as exc:
            return status_html(readable(exc), "error"), gr.skip(), gr.skip(), gr.skip()
        html_v, folders = render(*values)
        return status_html(f"Saved {ctx.paths.shown(path)}", "ok"), html_v, folders, gr.update(visible=False)

    editor_fields = [editor, editor_title, description, activation, negative, weight, sd_version, notes, training,
                     editing]
    panel.expand(render, inputs=view_inputs, outputs=[cards, folder], api_visibility="private",
                 show_progress="hidden")
    for component in (kind, folder, sort, descending):
        component.change(render, inputs=view_inputs, outputs=[cards, folder], api_visibility="private",
                         show_progress="hidden")
    search.change(render, inputs=view_inputs, outputs=[cards, folder], api_visibility="private",
                  show_progress="hidden", trigger_mode="always_last")
    refresh.click(do_refresh, inputs=view_inputs, outputs=[cards, folder, status], api_visibility="private")
    action_go.click(on_action, inputs=[action], outputs=[status, *editor_fields], api_visibility="private",
                    concurrency_limit=None, show_progress="hidden")
    save.click(on_save, inputs=[editing, description, activation, negative, weight, sd_version, notes, *view_inputs],
               outputs=[status, cards, folder, editor], api_visibility="private")
    close.click(lambda: (gr.update(visible=False), None), outputs=[editor, editing], api_visibility="private")
    def on_replace_preview(target: Any, gallery: Any, index: Any, *values: Any) -> tuple[Any, ...]:
        """The selected image of the tab's results becomes ``<name>.preview.png`` (A1111's "Replace preview")."""
        from modules.models.extra_networks import ExtraNetworkError

        if not target:
            return status_html("Pick a card to edit first (the pencil on a card).", "warn"), gr.skip(), gr.skip()
        image = _selected_image(gallery, index)
        if image is None:
            return status_html("Generate an image first, then pick it in the results.", "warn"), gr.skip(), gr.skip()
        try:
            path = networks.save_preview(networks.find(*target), image)
        except (ExtraNetworkError, LookupError) as exc:
            return status_html(readable(exc), "error"), gr.skip(), gr.skip()
        return (status_html(f"Saved {ctx.paths.shown(path)}", "ok"), *render(*values))

    def use_results(results: "Results") -> None:
        replace_preview.click(on_replace_preview, inputs=[editing, results.gallery, results.selected, *view_inputs],
                              outputs=[status, cards, folder], api_visibility="private")

    return ExtraNetworksPanel(panel, kind, cards, use_results)


def _selected_image(gallery: Any, index: Any) -> Any:
    """The selected (or first) image of a gallery value (a list of (file, caption)): a file Gradio has
    checked is in its upload cache, i.e. one the studio handed out."""
    from PIL import Image, UnidentifiedImageError

    if not gallery:
        return None
    position = index if isinstance(index, int) and 0 <= index < len(gallery) else 0
    item = gallery[position]
    source = item[0] if isinstance(item, (tuple, list)) else item
    if isinstance(source, Image.Image):
        return source
    try:
        with Image.open(source) as image:
            image.load()
            return image.copy()
    except (OSError, UnidentifiedImageError, TypeError, ValueError):
        return None


def _switch(ctx: "AppContext", card: "Card", request: gr.Request | None) -> str:
    """Switch to a checkpoint card's model through the queue (as the checkpoint picker does)."""
    from modules.jobs.model import JobState
    from modules.models.load_job import switch_model
    from webui.common import owner_of

    try:
        job = switch_model(ctx, str(card.path.resolve()), owner=owner_of(request))  # the catalog's own path
    except Exception as exc:  # noqa: BLE001 - shown to the user
        return status_html(ctx.paths.scrub(readable(exc)), "error")
    job.done.wait()
    if job.state is not JobState.SUCCEEDED:
        return status_html(ctx.paths.scrub(f"Could not load {card.id}: {job.error}"), "error")
    return status_html(f"Loaded {card.id}", "ok")
