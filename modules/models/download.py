"""Downloading model files: resumable, checked, atomic, with progress.

:func:`fetch` streams a URL into ``<dest>.part`` next to the target and renames it into place only
when complete (and, when the source gives one, when its SHA-256 matches). An interrupted download
keeps its ``.part`` file; the next attempt asks the server for the rest (HTTP ``Range``) and starts
over when the server cannot resume. Before starting it checks that the free disk space holds the file.
A file whose checksum does not match is deleted: nothing half-right is left where models are found.

Where a file comes from (:func:`resolve_source`): a plain URL; a Hugging Face repo file (its URL and
SHA-256 from ``huggingface_hub``: an LFS file's ETag is its SHA-256), with a token from the settings or
``HF_TOKEN``; or a Civitai model version (its metadata API gives the file name and SHA-256; an API key
from the settings or ``CIVITAI_API_KEY``). Tokens go in request headers only: never in logs, results
or messages (:func:`redact`).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

CHUNK = 1 << 20
CIVITAI_BASE = "https://civitai.com"
HF_BASE = "https://huggingface.co"


class DownloadError(RuntimeError):
    """A download that cannot be done or did not arrive intact; the message is for the user."""


@dataclass
class Source:
    url: str
    filename: str
    sha256: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()  # values that must never appear in a message


@dataclass
class Progress:
    done: int = 0
    total: int | None = None
    resumed_from: int = 0


def redact(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return re.sub(r"(token|key|api_key)=[^&\s]+", r"\1=***", text)


def safe_filename(name: str) -> str:
    """The last path part of ``name`` with nothing that climbs or hides (a file name the user will see)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if not base or base in (".", "..") or base.startswith(".") or "\x00" in base:
        raise DownloadError(f"{name!r} is not a usable file name")
    return base


def resolve_source(*, url: str | None = None, hf_repo: str | None = None, hf_file: str | None = None,
                   hf_revision: str = "main", hf_token: str | None = None, civitai_version: int | None = None,
                   civitai_key: str | None = None, sha256: str | None = None, filename: str | None = None,
                   civitai_base: str = CIVITAI_BASE, hf_base: str = HF_BASE,
                   get_json: Callable[[str, dict[str, str]], Any] | None = None) -> Source:
    """Where to download from, the file's name and its expected SHA-256 (when known)."""
    if sum(bool(x) for x in (url, hf_repo, civitai_version)) != 1:
        raise DownloadError("give exactly one source: a URL, a Hugging Face repo (with a file) or a Civitai "
                            "model version id")
    if url:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise DownloadError(f"{redact(url, ())!r} is not an http(s) URL")
        name = filename or parts.path.rsplit("/", 1)[-1] or "download.safetensors"
        return Source(url=url, filename=safe_filename(name), sha256=sha256)
    if hf_repo:
        if not hf_file:
            raise DownloadError("a Hugging Face download needs the file's name in the repo (e.g. "
                                "v1-5-pruned-emaonly.safetensors)")
        if not re.fullmatch(r"[\w.-]+/[\w.-]+", hf_repo):
            raise DownloadError(f"{hf_repo!r} is not a Hugging Face repo id (owner/name)")
        from huggingface_hub import hf_hub_url

        link = hf_hub_url(hf_repo, hf_file, revision=hf_revision, endpoint=hf_base)
        headers = {"Authorization": f"Bearer {hf_token}"} if hf_token else {}
        return Source(url=link, filename=safe_filename(filename or hf_file), sha256=sha256, headers=headers,
                      secrets=(hf_token or "",))
    headers = {"Authorization": f"Bearer {civitai_key}"} if civitai_key else {}
    meta_url = f"{civitai_base}/api/v1/model-versions/{int(civitai_version)}"  # type: ignore[arg-type]
    info = (get_json or _get_json)(meta_url, headers)
    files = info.get("files") or []
    chosen = next((f for f in files if f.get("primary")), files[0] if files else None)
    if chosen is None:
        raise DownloadError(f"Civitai model version {civitai_version} lists no file")
    digest = sha256 or ((chosen.get("hashes") or {}).get("SHA256") or None)
    link = chosen.get("downloadUrl") or f"{civitai_base}/api/download/models/{int(civitai_version)}"  # type: ignore[arg-type]
    return Source(url=link, filename=safe_filename(filename or chosen.get("name") or f"{civitai_version}.safetensors"),
                  sha256=digest.lower() if digest else None, headers=headers, secrets=(civitai_key or "",))


def _get_json(url: str, headers: dict[str, str]) -> Any:
    import httpx

    try:
        response = httpx.get(url, headers=headers, timeout=30, follow_redirects=True)
    except httpx.HTTPError as exc:
        raise DownloadError(f"cannot reach {urlsplit(url).netloc}: {type(exc).__name__} (offline?)") from None
    if response.status_code != 200:
        raise DownloadError(f"{urlsplit(url).netloc} answered {response.status_code} for {urlsplit(url).path}")
    try:
        return response.json()
    except ValueError:
        raise DownloadError(f"{urlsplit(url).netloc} did not answer JSON") from None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(source: Source, dest: Path, *, on_progress: Callable[[Progress], None] | None = None,
          should_stop: Callable[[], bool] | None = None, timeout: float = 60.0) -> Path | None:
    """Download ``source`` to ``dest`` (resuming ``dest.part``); None when stopped (the part file stays)."""
    import httpx

    if dest.exists():
        raise DownloadError(f"{dest.name} exists already: delete or rename it first")
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    headers = dict(source.headers)
    if have:
        headers["Range"] = f"bytes={have}-"
    progress = Progress(done=have, resumed_from=have)
    where = urlsplit(source.url).netloc
    try:
        with httpx.stream("GET", source.url, headers=headers, timeout=timeout, follow_redirects=True) as response:
            if response.status_code == 416 and have:  # the part file is already whole
                progress.total = have
            elif response.status_code not in (200, 206):
                raise DownloadError(f"{where} answered {response.status_code} for {dest.name}"
                                    + (" (a token or API key may be needed)" if response.status_code in (401, 403) else ""))
            else:
                if response.status_code == 200 and have:  # the server cannot resume: start over
                    have, progress.done, progress.resumed_from = 0, 0, 0
                length = response.headers.get("Content-Length")
                progress.total = (have + int(length)) if length and length.isdigit() else None
                check_space(dest.parent, (progress.total or 0) - have)
                with part.open("ab" if have else "wb") as handle:
                    for block in response.iter_bytes(CHUNK):
                        handle.write(block)
                        progress.done += len(block)
                        if on_progress is not None:
                            on_progress(progress)
                        if should_stop is not None and should_stop():
                            return None
    except httpx.HTTPError as exc:
        raise DownloadError(redact(f"cannot download from {where}: {type(exc).__name__}: {exc} (offline, or the "
                                   f"server is down?); the part already downloaded is kept for a retry",
                                   source.secrets)) from None
    if progress.total is not None and part.stat().st_size != progress.total:
        raise DownloadError(f"{dest.name}: the connection ended early ({part.stat().st_size} of {progress.total} "
                            "bytes); the part is kept for a retry")
    if source.sha256:
        actual = sha256_of(part)
        if actual != source.sha256.lower():
            part.unlink(missing_ok=True)
            raise DownloadError(f"{dest.name}: SHA-256 {actual[:12]}… does not match the source's "
                                f"{source.sha256[:12]}…; the file was deleted")
    os.replace(part, dest)
    return dest


def check_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if needed > 0 and free < needed + (64 << 20):
        raise DownloadError(f"not enough free disk space: {needed >> 20} MB needed, {free >> 20} MB free")

