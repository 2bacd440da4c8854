"""Mount the Gradio studio on the HTTP app, with the file-input rules of a launched Gradio app.

Why this module exists: Atelier serves its UI with ``gr.mount_gradio_app`` (one server for the UI,
the APIs and extension routes) and never calls ``Blocks.launch()``. Gradio checks that a file named
in an event's input (a ``FileData`` ``path``) lies in its upload cache, i.e. that a client uploaded
it, only once the Blocks ``has_launched``; a mounted app never is, so any event taking a file would
copy whatever server file a request named into the cache and serve it back (the class of Gradio's
CVE-2023-51449). Here the mounted Blocks is marked launched, as ``launch()`` itself does, so that
Gradio's own check applies to every event, present and future: an input file is accepted only from
the upload cache, which holds what clients uploaded and what the studio itself handed out (result
and gallery images are copied there when shown). :mod:`webui.input_files` checks the same before
Gradio sees a request, URLs included (Gradio would fetch a URL for the client).

The cache lives in ``<data dir>/cache/gradio`` (not the host-wide ``/tmp/gradio`` every instance
shares), and is emptied at start. Gradio reads its location from ``GRADIO_TEMP_DIR`` when the
components are built and when a request is checked, so it is set before the UI is built; one studio
runs per process.
"""

from __future__ import annotations

import logging
import os
import shutil
from typing import TYPE_CHECKING

from starlette.types import ASGIApp

from webui.error_paths import ErrorPathScrubber
from webui.input_files import InputFileGuard

if TYPE_CHECKING:
    from fastapi import FastAPI

    from modules.app_context import AppContext

log = logging.getLogger(__name__)


def prepare_gradio_cache(ctx: "AppContext") -> None:
    """Point Gradio's cache at the data dir and empty it (files of an earlier run are not kept)."""
    folder = ctx.paths.gradio_cache_dir
    if folder.exists():
        shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(folder)


def mount_ui(app: "FastAPI", ctx: "AppContext") -> tuple["FastAPI", ASGIApp]:
    """Mount the studio at "/" and return (the app, the UI's ASGI app wrapped for error messages)."""
    import gradio as gr

    from webui.app import build_ui
    from webui.look import HEAD_HTML, css_paths, page_scripts

    prepare_gradio_cache(ctx)
    blocks = build_ui(ctx)
    auth = list(ctx.flags.gradio_auth) or None
    # uploads over the body limit get Gradio's own readable "file too large" message in the page
    upload_limit = max(1, ctx.flags.max_body_mb * 1024 * 1024 - 64 * 1024)
    app = gr.mount_gradio_app(app, blocks, path="", auth=auth, show_error=True, max_file_size=upload_limit,
                              footer_links=["api"] if ctx.flags.api_enabled else [],
                              css_paths=css_paths(ctx.paths.data_dir), head=page_scripts(), head_paths=[HEAD_HTML])
    # What Blocks.launch() sets: from now on Gradio accepts input files from its upload cache only.
    blocks.has_launched = True
    guarded = InputFileGuard(_ui_mount(app), ctx.paths.gradio_cache_dir, max_bytes=ctx.flags.max_body_mb * 1024 * 1024)
    return app, ErrorPathScrubber(guarded, ctx.paths.scrub)


def _ui_mount(app: "FastAPI") -> ASGIApp:
    """The ASGI app Gradio mounted at "" (the server moves it to the router's fallback)."""
    from starlette.routing import Mount

    mount = next(r for r in app.router.routes if isinstance(r, Mount) and r.path == "")
    return mount.app
