"""The Models tab's file actions: Download, Checkpoint Merger and Convert, each a queued job with a
progress bar (the requests and the work are in modules/models: download_job, file_jobs)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

import gradio as gr

from webui.common import checkpoint_titles, owner_of
from webui.progress import bar_html, run_and_follow

if TYPE_CHECKING:
    from modules.app_context import AppContext

MODEL_KINDS = ["checkpoint", "lora", "vae", "embedding", "controlnet", "upscaler", "text_encoder", "vlm", "classifier"]


def _follow(ctx: "AppContext", make: Any, request: gr.Request) -> Iterator[str]:
    try:
        req = make()
    except Exception as exc:  # noqa: BLE001 - a bad field is said in the page
        from webui.common import readable

        yield bar_html("failed", 1.0, f"Not started: {readable(exc)}")
        return
    for job, status in run_and_follow(ctx, req, owner_of(request)):
        if job is None:
            yield status
            continue
        result = job.result if isinstance(job.result, dict) else {}
        if job.error and not result:
            yield bar_html("failed", 1.0, f"Failed: {ctx.paths.scrub(job.error)}")
        elif result.get("stopped"):
            yield bar_html("cancelled", 0.0, result.get("note", "stopped"))
        else:
            shown = result.get("path") or result.get("checkpoint") or result.get("file") or "done"
            yield bar_html("done", 1.0, f"Done: {shown}")


def _known_choices() -> list[tuple[str, str]]:
    from modules.models.known_models import known_catalogue

    try:
        return known_catalogue().choices()
    except (OSError, ValueError):  # a damaged catalogue file leaves the picker empty, never the tab broken
        return []


def build_model_files(ctx: "AppContext") -> None:
    """Download / Merge / Convert accordions (call inside the Models tab)."""
    with gr.Accordion("Download a model", open=False, elem_id="models_download"):
        gr.Markdown("From a URL, a Hugging Face repo file or a Civitai model version. Interrupted downloads "
                    "continue where they stopped; a SHA-256 given (or known to the source) is checked. "
                    "Hugging Face files come through its client and cache (in the data dir); its token is the "
                    "one saved in Settings → Hugging Face, else `HF_TOKEN`; Civitai's key comes from "
                    "`CIVITAI_API_KEY`. Never typed in this page.")
        with gr.Row():
            kind = gr.Dropdown(MODEL_KINDS, value="checkpoint", label="Kind (its folder)", elem_id="download_kind")
            source = gr.Radio(["URL", "Hugging Face", "Civitai"], value="URL", label="Source",
                              elem_id="download_source")
        known = gr.Dropdown(_known_choices(), value=None, elem_id="download_known",
                            label="Known-good models (fills the form; nothing downloads until you press Download)")
        known_note = gr.Markdown("", elem_id="download_known_note")
        location = gr.Textbox(label="URL, repo id (owner/name) or Civitai version id", elem_id="download_location")
        with gr.Row():
            hf_file = gr.Textbox(label="File in the repo (Hugging Face)", elem_id="download_hf_file")
            sha = gr.Textbox(label="SHA-256 (optional)", elem_id="download_sha256")
            filename = gr.Textbox(label="Save as (optional)", elem_id="download_filename")
        start = gr.Button("Download", variant="primary", elem_id="download_start")
        download_status = gr.HTML("", elem_id="download_status")

    def download(kind_: str, source_: str, location_: str, file_: str, sha_: str, name_: str,
                 request: gr.Request) -> Iterator[str]:
        from modules.models.download_job import DownloadModelRequest

        def make() -> Any:
            text = (location_ or "").strip()
            fields: dict[str, Any] = {"model_kind": kind_, "sha256": sha_.strip() or None,
                                      "filename": name_.strip() or None}
            if source_ == "Hugging Face":
                fields.update(hf_repo=text, hf_file=file_.strip() or None)
            elif source_ == "Civitai":
                if not text.isdigit():
                    raise ValueError("a Civitai model version id is a number (the modelVersionId in its page's URL)")
                fields["civitai_version"] = int(text)
            else:
                fields["url"] = text
            return DownloadModelRequest(**fields)

        yield from _follow(ctx, make, request)

    start.click(download, inputs=[kind, source, location, hf_file, sha, filename], outputs=[download_status],
                api_visibility="private", concurrency_limit=None)

    def fill_known(choice: str | None) -> tuple[Any, ...]:
        from modules.models.known_models import known_catalogue

        try:
            form = known_catalogue().form(choice or "")
        except (LookupError, OSError, ValueError):
            return (gr.skip(),) * 6 + ("",)
        return (form["kind"], form["source"], form["location"], form["hf_file"], form["sha256"], "", form["note"])

    known.input(fill_known, inputs=[known], outputs=[kind, source, location, hf_file, sha, filename, known_note],
                api_visibility="private")

    with gr.Accordion("Checkpoint Merger", open=False, elem_id="models_merge"):
        titles = checkpoint_titles(ctx)
        with gr.Row():
            primary = gr.Dropdown(titles, label="Primary model (A)", elem_id="merge_primary")
            secondary = gr.Dropdown(titles, label="Secondary model (B)", elem_id="merge_secondary")
            tertiary = gr.Dropdown(["None", *titles], value="None", label="Tertiary model (C)",
                                   elem_id="merge_tertiary")
        with gr.Row():
            method = gr.Radio([("Weighted sum: A·(1−M) + B·M", "weighted_sum"),
                               ("Add difference: A + (B − C)·M", "add_difference"),
                               ("Train difference: A + 1.8·M·(B − C)·|B − A| / (|B − C| + |B − A|)",
                                "train_difference")], value="weighted_sum",
                              label="Interpolation method", elem_id="merge_method")
            multiplier = gr.Slider(0, 1, value=0.5, step=0.05, label="Multiplier (M)", elem_id="merge_multiplier")
        with gr.Row():
            output = gr.Textbox(label="Custom name", elem_id="merge_output")
            dtype = gr.Radio(["keep", "fp16", "bf16"], value="keep", label="Precision", elem_id="merge_dtype")
            vae = gr.Textbox(label="Bake in VAE (a file of models/VAE, optional)", elem_id="merge_vae")
        merge_button = gr.Button("Merge", variant="primary", elem_id="merge_start")
        merge_status = gr.HTML("", elem_id="merge_status")

    def do_merge(a: str, b: str, c: str, method_: str, m: float, out: str, dtype_: str, vae_: str,
                 request: gr.Request) -> Iterator[str]:
        from modules.models.file_jobs import MergeModelsRequest

        def make() -> Any:
            return MergeModelsRequest(primary=a or "", secondary=b or "", tertiary=None if c in (None, "", "None") else c,
                                      method=method_, multiplier=m, output=out or "", dtype=dtype_,
                                      bake_vae=vae_.strip() or None)

        yield from _follow(ctx, make, request)

    merge_button.click(do_merge, inputs=[primary, secondary, tertiary, method, multiplier, output, dtype, vae],
                       outputs=[merge_status], api_visibility="private", concurrency_limit=None)

    with gr.Accordion("Convert", open=False, elem_id="models_convert"):
        with gr.Row():
            convert_source = gr.Dropdown(checkpoint_titles(ctx), label="Checkpoint", elem_id="convert_source")
            operation = gr.Radio([("to .safetensors (from .ckpt/.pt, without running its code)", "to_safetensors"),
                                  ("fp16", "fp16"), ("bf16", "bf16"), ("prune EMA", "prune_ema"),
                                  ("EMA only", "ema_only"),
                                  ("diffusers folder → single file (original layout)", "to_single_file"),
                                  ("single file → diffusers folder", "to_diffusers")],
                                 value="to_safetensors", label="Operation",
                                 elem_id="convert_operation")
            convert_output = gr.Textbox(label="New name (optional)", elem_id="convert_output")
        convert_button = gr.Button("Convert", variant="primary", elem_id="convert_start")
        convert_status = gr.HTML("", elem_id="convert_status")

    def do_convert(src: str, op: str, out: str, request: gr.Request) -> Iterator[str]:
        from modules.models.file_jobs import ConvertModelRequest

        yield from _follow(ctx, lambda: ConvertModelRequest(source=src or "", operation=op, output=out.strip() or None),
                           request)

    convert_button.click(do_convert, inputs=[convert_source, operation, convert_output], outputs=[convert_status],
                         api_visibility="private", concurrency_limit=None)

    def refresh_lists() -> tuple[Any, ...]:
        names = checkpoint_titles(ctx)
        return (gr.update(choices=names), gr.update(choices=names), gr.update(choices=["None", *names]),
                gr.update(choices=names))

    for status in (merge_status, convert_status, download_status):
        status.change(refresh_lists, outputs=[primary, secondary, tertiary, convert_source], api_visibility="private",
                      show_progress="hidden")
