"""The ``download_model`` job kind: a model file fetched into its folder, with progress, resumable.

Downloads run on their own lane (``download``), so a long one never holds up generation; a download
stopped (or cut off by a restart) keeps its ``.part`` file and continues from it when run again. With
``--offline`` every download is refused. Nothing downloads by itself: only a request does this.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from modules.jobs.kinds import JobKind
from modules.models.download import DownloadError, Progress, fetch, resolve_source, safe_filename

if TYPE_CHECKING:
    from modules.app_context import AppContext
    from modules.jobs.model import Job
    from modules.jobs.progress import JobControl

DOWNLOAD_LANE = "download"
ModelKind = Literal["checkpoint", "lora", "vae", "embedding", "controlnet", "upscaler", "text_encoder", "vlm",
                    "classifier"]


class DownloadModelRequest(BaseModel):
    """Download one model file from a URL, a Hugging Face repo or Civitai into the folder of its kind."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["download_model"] = "download_model"
    model_kind: ModelKind = Field("checkpoint", description="where it goes: the folder of this kind of model")
    url: str | None = Field(None, max_length=4000, description="an http(s) URL")
    hf_repo: str | None = Field(None, max_length=200, description="a Hugging Face repo id (owner/name)")
    hf_file: str | None = Field(None, max_length=500, description="the file in the Hugging Face repo")
    hf_revision: str = Field("main", max_length=100)
    civitai_version: int | None = Field(None, ge=1, description="a Civitai model version id")
    sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$", description="the expected SHA-256 (checked)")
    filename: str | None = Field(None, max_length=255, description="save under this name (default: the source's)")


def model_folder(ctx: "AppContext", kind: str) -> Path:
    paths = ctx.paths
    models = paths.data_dir / "models"
    return {"checkpoint": paths.ckpt_dirs[0], "lora": paths.lora_dir, "vae": paths.vae_dir,
            "embedding": paths.embeddings_dir, "controlnet": paths.controlnet_dir, "upscaler": models / "ESRGAN",
            "text_encoder": paths.text_encoder_dir, "vlm": models / "VLM", "classifier": models / "classifier"}[kind]


def _source(ctx: "AppContext", req: DownloadModelRequest) -> Any:
    return resolve_source(url=req.url, hf_repo=req.hf_repo, hf_file=req.hf_file, hf_revision=req.hf_revision,
                          hf_token=os.environ.get("HF_TOKEN") or None, civitai_version=req.civitai_version,
                          civitai_key=os.environ.get("CIVITAI_API_KEY") or None, sha256=req.sha256,
                          filename=req.filename,
                          civitai_base=os.environ.get("ATELIER_CIVITAI_BASE", "https://civitai.com"),
                          hf_base=os.environ.get("HF_ENDPOINT", "https://huggingface.co"))


def precheck(ctx: "AppContext", req: DownloadModelRequest) -> None:
    if ctx.flags.offline:
        raise DownloadError("this studio runs with --offline: downloads are off")
    if sum(bool(x) for x in (req.url, req.hf_repo, req.civitai_version)) != 1:
        raise DownloadError("give exactly one source: url, hf_repo (with hf_file) or civitai_version")
    if req.hf_repo and not req.hf_file:
        raise DownloadError("a Hugging Face download needs hf_file, the file's name in the repo")


def run(ctx: "AppContext", job: "Job", control: "JobControl") -> dict[str, Any]:
    req: DownloadModelRequest = job.request
    if req.hf_repo:
        filename = safe_filename(req.filename or req.hf_file or "")
    else:
        source = _source(ctx, req)
        filename = source.filename
    dest = model_folder(ctx, req.model_kind) / filename
    control.begin(1, 1000, text=f"downloading {filename}")

    def report(progress: Progress) -> None:
        if progress.total:
            control.step(min(1000, progress.done * 1000 // progress.total))
        control.progress.text = (f"downloading {filename}: {progress.done >> 20} MB"
                                 + (f" of {progress.total >> 20} MB" if progress.total else ""))

    if req.hf_repo:  # through huggingface_hub and its cache under the data dir (modules/models/hf_download.py)
        from modules.models.hf_download import download_hf

        done = download_hf(ctx.paths, req.hf_repo, req.hf_file or "", dest, revision=req.hf_revision,
                           sha256=req.sha256, on_progress=report, should_stop=lambda: control.should_stop)
        path, checked = done if done is not None else (None, False)
    else:
        path = fetch(source, dest, on_progress=report, should_stop=lambda: control.should_stop)
        checked = bool(source.sha256)
    if path is None:
        return {"file": filename, "stopped": True,
                "note": "stopped: the part downloaded is kept; run the same download again to continue"}
    control.step(1000)
    if req.model_kind == "checkpoint":
        ctx.catalog.refresh()
    return {"file": filename, "path": ctx.paths.shown(path), "bytes": path.stat().st_size,
            "sha256_checked": checked}


DOWNLOAD_MODEL = JobKind(
    name="download_model", request=DownloadModelRequest, run=run, precheck=precheck,
    describe=lambda result: dict(result) if isinstance(result, dict) else None,
    summary="Download a model file (URL, Hugging Face repo file or Civitai version) into its folder; resumable.",
    resumable=True, user_errors=(DownloadError,), lane=DOWNLOAD_LANE)

KINDS = (DOWNLOAD_MODEL,)
