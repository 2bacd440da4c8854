"""Hugging Face downloads through ``huggingface_hub``, with its cache under the data dir, and the token.

:func:`download_hf` asks ``hf_hub_download`` for one file of a repo (its cache: ``<data>/cache/huggingface``,
so a second download of the same file, or of a file another model shares, costs nothing and an interrupted one
continues from its ``.incomplete`` blob), then links (or copies) it atomically into the model folder. The
SHA-256 is checked when the request gives one, and for files the Hub stores in LFS (their ETag, the blob's
name in the cache, is their SHA-256). ``HF_ENDPOINT`` (or ``endpoint``) points it at a mirror.

The token: the one saved from the Settings page (:func:`save_token`: ``<data dir>/hf_token.txt``, owner-only,
never a field of the settings file, so ``/sdapi/v1/options`` never answers it), else ``HF_TOKEN`` from the
environment; none means anonymous (the Hub's own login file in the home folder is not read). A token never
appears in a log, a result, an infotext or an error message (:func:`_redacted`).
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from modules.models.download import DownloadError, Progress, check_space, sha256_of

if TYPE_CHECKING:
    from modules.paths import Paths

TOKEN_FILE = "hf_token.txt"
TOKEN_ENV = "HF_TOKEN"
DEFAULT_ENDPOINT = "https://huggingface.co"


class Stopped(Exception):
    """The job was stopped while the file was downloading (huggingface_hub keeps the part for a retry)."""


@dataclass(frozen=True)
class TokenState:
    source: str | None  # "settings", "environment" or None
    token: str | None

    def describe(self) -> str:
        return {"settings": "a token saved in Settings is used",
                "environment": f"no token saved in Settings: {TOKEN_ENV} from the environment is used",
                None: f"no token (none saved in Settings, no {TOKEN_ENV} in the environment): public repos only"}[
            self.source]


def token_file(paths: "Paths") -> Path:
    return paths.data_dir / TOKEN_FILE


def token_state(paths: "Paths") -> TokenState:
    """The token a download uses and where it comes from: Settings first, then ``HF_TOKEN``."""
    try:
        saved = token_file(paths).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        saved = ""
    if saved:
        return TokenState("settings", saved)
    env = os.environ.get(TOKEN_ENV, "").strip()
    return TokenState("environment", env) if env else TokenState(None, None)


def save_token(paths: "Paths", token: str) -> TokenState:
    """Save (or, with an empty ``token``, forget) the Settings token; readable by the owner only."""
    token = token.strip()
    path = token_file(paths)
    if not token:
        path.unlink(missing_ok=True)
        return token_state(paths)
    if any(ch.isspace() for ch in token) or len(token) > 400 or not token.isprintable():
        raise DownloadError("that does not look like a Hugging Face token (one word, no spaces)")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(token)
    os.replace(partial, path)
    return token_state(paths)


def cache_dir(paths: "Paths") -> Path:
    return paths.cache_dir / "huggingface"


def _redacted(text: str, token: str | None) -> str:
    if token:
        text = text.replace(token, "***")
    return re.sub(r"hf_[A-Za-z0-9]{8,}", "hf_***", text)


def _progress_class(on_progress: Callable[[Progress], None] | None, should_stop: Callable[[], bool] | None) -> Any:
    """A tqdm class that reports to the job (and stops the download when the job is stopped)."""
    from tqdm.auto import tqdm

    class JobProgress(tqdm):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = False
            kwargs["file"] = open(os.devnull, "w")  # noqa: SIM115 - closed in close()
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            shown = super().update(n)
            if on_progress is not None:
                on_progress(Progress(done=int(self.n), total=int(self.total) if self.total else None))
            if should_stop is not None and should_stop():
                raise Stopped()
            return shown

        def close(self) -> None:
            handle = self.fp
            super().close()
            try:
                handle.close()
            except (AttributeError, OSError):
                pass

    return JobProgress


def download_hf(paths: "Paths", repo: str, filename: str, dest: Path, *, revision: str = "main",
                sha256: str | None = None, endpoint: str | None = None,
                on_progress: Callable[[Progress], None] | None = None,
                should_stop: Callable[[], bool] | None = None) -> tuple[Path, bool] | None:
    """``repo``'s ``filename`` at ``revision`` into ``dest`` (atomically): (the path, whether a SHA-256 was
    checked); None when stopped."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError,
                                        OfflineModeIsEnabled, RepositoryNotFoundError, RevisionNotFoundError)

    if dest.exists():
        raise DownloadError(f"{dest.name} exists already: delete or rename it first")
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo):
        raise DownloadError(f"{repo!r} is not a Hugging Face repo id (owner/name)")
    token = token_state(paths).token
    where = endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT
    try:
        # unreachable (offline): only the cache, at once (the client itself retries for about 25 s)
        cached_only = not _reachable(where)
        common: dict[str, Any] = {"revision": revision, "cache_dir": cache_dir(paths), "token": token or False,
                                  "endpoint": where, "local_files_only": cached_only}
        if not cached_only:  # the free disk space, before starting (one HEAD request to the Hub)
            plan = hf_hub_download(repo, filename, dry_run=True, **common)
            if getattr(plan, "will_download", False) and getattr(plan, "file_size", None):
                cache_dir(paths).mkdir(parents=True, exist_ok=True)
                check_space(cache_dir(paths), int(plan.file_size))
        blob = Path(hf_hub_download(repo, filename, tqdm_class=_progress_class(on_progress, should_stop), **common))
    except Stopped:
        return None
    except GatedRepoError:
        raise DownloadError(f"{repo} is gated: accept its licence on its Hugging Face page, then save a token "
                            f"in Settings (or set {TOKEN_ENV})") from None
    except RepositoryNotFoundError:
        raise DownloadError(f"no repo {repo} on {where}, or it is private" +
                            ("" if token else f": a token (Settings, or {TOKEN_ENV}) may be needed")) from None
    except RevisionNotFoundError:
        raise DownloadError(f"{repo} has no revision {revision!r}") from None
    except LocalEntryNotFoundError:
        raise DownloadError(f"cannot reach {where} to download {repo}/{filename}, and it is not in the cache "
                            "(offline?)") from None
    except EntryNotFoundError:
        raise DownloadError(f"{repo} has no file {filename!r} at {revision}") from None
    except OfflineModeIsEnabled:
        raise DownloadError("HF_HUB_OFFLINE is set and the file is not in the cache") from None
    except (HfHubHTTPError, OSError) as exc:
        raise DownloadError(_redacted(f"downloading {repo}/{filename} from {where} failed: {exc}", token)) from None
    expected = (sha256 or "").lower() or (blob.resolve().name if re.fullmatch(r"[0-9a-f]{64}", blob.resolve().name)
                                          else None)
    if expected is not None:
        actual = sha256_of(blob)
        if actual != expected:
            blob.resolve().unlink(missing_ok=True)
            blob.unlink(missing_ok=True)
            raise DownloadError(f"{dest.name}: SHA-256 {actual[:12]}… does not match the expected "
                                f"{expected[:12]}…; nothing was kept")
    _place(blob.resolve(), dest)
    return dest, expected is not None


def _reachable(endpoint: str, timeout: float = 5.0) -> bool:
    """Whether a TCP connection to ``endpoint``'s host opens (True when a proxy is configured: it decides)."""
    import socket
    from urllib.parse import urlsplit

    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY")):
        return True
    parts = urlsplit(endpoint)
    if not parts.hostname:
        return True
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def _place(blob: Path, dest: Path) -> None:
    """The cached blob at ``dest``: a hard link where the file system allows it, else a copy; atomically."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".part")
    partial.unlink(missing_ok=True)
    try:
        os.link(blob, partial)
    except OSError:
        shutil.copyfile(blob, partial)
    os.replace(partial, dest)
