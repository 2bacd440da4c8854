"""The Extensions tab: every script file and extension with its state, scripts, requirements and errors;
Approve (after reading what it means), Disable, Enable, Refresh; install from a git URL and install an
extension's requirements (both only on this computer, see :mod:`modules.scripts.extension_admin`, where
all the logic lives)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gradio as gr

from webui.common import readable, status_html

if TYPE_CHECKING:
    from modules.app_context import AppContext


@dataclass
class ExtensionsTab:
    table: Any
    pick: Any
    status: Any


def _client_host(request: gr.Request | None) -> str | None:
    client = getattr(request, "client", None)
    return getattr(client, "host", None)


def build_extensions_tab(ctx: "AppContext") -> ExtensionsTab:
    from modules.scripts import extension_admin as admin

    gr.Markdown("Scripts and extensions run **only after you approve them**. A new or changed one is listed "
                "here and none of its code runs until then. See docs/extensions.md to write one.")
    table = gr.Dataframe(value=admin.source_rows(ctx), headers=list(admin.COLUMNS), interactive=False, wrap=True,
                         column_widths=["13%", "10%", "15%", "17%", "15%", "18%", "12%"], elem_id="extensions_table")
    with gr.Row(equal_height=True):
        pick = gr.Dropdown(admin.source_choices(ctx), value=None, label="Script or extension", scale=3,
                           elem_id="extensions_pick")
        refresh = gr.Button("Refresh", elem_id="extensions_refresh", scale=0, min_width=100)
    detail = gr.Markdown("", elem_id="extensions_detail")
    with gr.Row():
        approve = gr.Button("Approve…", variant="primary", elem_id="extensions_approve", min_width=0)
        disable = gr.Button("Disable", elem_id="extensions_disable", min_width=0)
        enable = gr.Button("Enable", elem_id="extensions_enable", min_width=0)
    with gr.Column(visible=False, elem_id="extensions_confirm_box") as confirm_box:
        consent = gr.Markdown("", elem_id="extensions_consent")
        with gr.Row():
            confirm = gr.Button("Yes, approve and run it", variant="stop", elem_id="extensions_confirm_approve")
            cancel = gr.Button("Cancel", elem_id="extensions_cancel_approve")
    status = gr.HTML("", elem_id="extensions_status")
    problems = gr.Textbox(value="\n".join(admin.problem_lines(ctx)), label="Problems (newest first)", lines=4,
                          interactive=False, elem_id="extensions_problems")
    with gr.Accordion("Install from git URL", open=False, elem_id="extensions_install_box"):
        gr.Markdown("Clones the repository into the data dir's `extensions/` folder. Nothing of it runs: it "
                    "appears in the list as *new* and waits for your approval. Only from this computer, and not "
                    "while the studio is reachable from the network (unless started with "
                    "--enable-insecure-extension-access).")
        if not ctx.flags.extension_install_allowed:
            gr.HTML(status_html("Installing is off: this studio is reachable from the network (--listen, --share "
                                "or --ngrok) and was not started with --enable-insecure-extension-access.", "warn"),
                    elem_id="extensions_install_off")
        with gr.Row():
            url = gr.Textbox(label="git URL", placeholder="https://github.com/user/my-extension", scale=3,
                             elem_id="extensions_git_url")
            folder = gr.Textbox(label="Folder name (optional)", scale=1, elem_id="extensions_git_name")
        install = gr.Button("Install", elem_id="extensions_install")
    with gr.Accordion("Install requirements", open=False, elem_id="extensions_requirements_box"):
        show_reqs = gr.Button("Show the requirements of the extension picked above", elem_id="extensions_show_reqs")
        reqs_text = gr.Markdown("", elem_id="extensions_reqs_list")
        shown = gr.State(None)  # the list the user read: installing needs exactly that list
        agreed = gr.Checkbox(label="I read the list and want pip to install it", value=False,
                             elem_id="extensions_reqs_confirm")
        install_reqs = gr.Button("Install requirements", elem_id="extensions_install_reqs")
    output = gr.Textbox(label="Output (git, pip)", lines=6, interactive=False, elem_id="extensions_output")

    def listing(note: str = "", kind: str = "info", name: str | None = None) -> list[Any]:
        rows = admin.source_rows(ctx)  # discovers again first
        choices = admin.source_choices(ctx)
        chosen = name if name in [key for _, key in choices] else None
        text = admin.source_detail(ctx, chosen) if chosen else ""
        return [gr.update(value=rows), gr.update(choices=choices, value=chosen), text,
                status_html(note, kind) if note else "", "\n".join(admin.problem_lines(ctx))]

    outputs = [table, pick, detail, status, problems]

    def act(action: Any, name: str) -> list[Any]:
        try:
            outcome = action(ctx, name)
        except (admin.ExtensionAdminError, PermissionError, KeyError) as exc:
            return listing(readable(exc), "error", name) + [gr.update(visible=False)]
        return listing(outcome.message, "ok" if outcome.ok else "error", name) + [gr.update(visible=False)]

    def ask_approval(name: str) -> list[Any]:
        try:
            return [gr.update(visible=True), admin.approve_preview(ctx, name), ""]
        except admin.ExtensionAdminError as exc:
            return [gr.update(visible=False), "", status_html(readable(exc), "error")]

    def do_refresh(name: str | None) -> list[Any]:
        return listing(admin.refresh(ctx).message, "info", name)

    def show_detail(name: str | None) -> str:
        try:
            return admin.source_detail(ctx, name) if name else ""
        except admin.ExtensionAdminError as exc:
            return readable(exc)

    def do_install(git_url: str, name: str, request: gr.Request) -> list[Any]:
        try:
            outcome = admin.install_from_git(ctx, git_url, _client_host(request), name=name)
        except admin.ExtensionAdminError as exc:
            return listing(readable(exc), "error") + [""]
        new_name = (name or "").strip() or (admin.extension_name_from_url(git_url) if outcome.ok else "")
        return listing(outcome.message, "ok" if outcome.ok else "error", f"extension:{new_name}") + [outcome.output]

    def show_requirements(name: str | None) -> list[Any]:
        try:
            source_reqs = ctx.scripts.sources.get(name).requirements if name else None
            return [admin.requirements_preview(ctx, name or ""), list(source_reqs or []) or None, False]
        except (admin.ExtensionAdminError, KeyError) as exc:
            return [readable(exc), None, False]

    def do_install_reqs(name: str | None, read: list[str] | None, ok: bool, request: gr.Request) -> list[Any]:
        if not ok:
            return listing("Tick \"I read the list\" first.", "warn", name) + [""]
        try:
            outcome = admin.install_requirements(ctx, name or "", read, _client_host(request))
        except admin.ExtensionAdminError as exc:
            return listing(readable(exc), "error", name) + [""]
        return listing(outcome.message, "ok" if outcome.ok else "error", name) + [outcome.output]

    private = {"api_visibility": "private"}
    pick.change(show_detail, inputs=[pick], outputs=[detail], queue=False, show_progress="hidden", **private)
    refresh.click(do_refresh, inputs=[pick], outputs=outputs, **private)
    approve.click(ask_approval, inputs=[pick], outputs=[confirm_box, consent, status], queue=False, **private)
    cancel.click(lambda: gr.update(visible=False), outputs=[confirm_box], queue=False, **private)
    confirm.click(lambda name: act(admin.approve, name), inputs=[pick], outputs=[*outputs, confirm_box], **private)
    disable.click(lambda name: act(admin.disable, name), inputs=[pick], outputs=[*outputs, confirm_box], **private)
    enable.click(lambda name: act(admin.enable, name), inputs=[pick], outputs=[*outputs, confirm_box], **private)
    install.click(do_install, inputs=[url, folder], outputs=[*outputs, output], **private)
    show_reqs.click(show_requirements, inputs=[pick], outputs=[reqs_text, shown, agreed], **private)
    install_reqs.click(do_install_reqs, inputs=[pick, shown, agreed], outputs=[*outputs, output], **private)
    return ExtensionsTab(table, pick, status)
