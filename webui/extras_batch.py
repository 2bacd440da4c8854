"""Extras "Batch Process" (many uploads) and "Batch from Directory" (a server folder): the page's values as
an :class:`modules.images.extras_job.ExtrasRequest`, and the finished batch as a status line."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import TYPE_CHECKING, Any

from webui.common import status_html

if TYPE_CHECKING:
    from modules.app_context import AppContext
    from modules.images.extras_job import ExtrasRequest, ExtrasResult


def batch_extras_request(mode: str, files: Any, input_dir: str, output_dir: str, **params: Any) -> "ExtrasRequest":
    """The request for a batch source mode ("batch": uploaded ``files``; "directory": ``input_dir``);
    ValueError with what is missing."""
    from modules.images.extras_job import ExtrasRequest

    if mode == "directory":
        if not (input_dir or "").strip():
            raise ValueError("Batch from Directory: type the input directory (a folder on the server)")
        return ExtrasRequest(input_dir=input_dir.strip(), output_dir=(output_dir or "").strip() or None, **params)
    paths = [str(f) for f in (files or []) if f]
    if not paths:
        raise ValueError("Batch Process: upload the images first")
    # the files are in Gradio's upload cache (the input guard refuses any other path)
    return ExtrasRequest(images=[base64.b64encode(Path(p).read_bytes()).decode("ascii") for p in paths],
                         names=[Path(p).name for p in paths], save_images=True, **params)


def batch_status(ctx: "AppContext", result: "ExtrasResult") -> str:
    """"N of M done, K failed (name: reason)" and where the images went."""
    summary = result.batch
    saved = [path for path in result.paths if path]
    where = f" · saved in {ctx.paths.shown(saved[0].parent)}" if saved else ""
    kind = "warn" if summary.failed or summary.interrupted else "ok"
    return status_html(f"{summary.text()}{where}", kind)
