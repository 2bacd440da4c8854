"""Hugging Face downloads through huggingface_hub (issue 28): from a local server of the Hub's shape (HF_ENDPOINT),
cached under the data dir, the token from Settings (else HF_TOKEN) sent but never shown, a wrong SHA-256 refused
with nothing left, offline a clear message; and the download_model job on the same path."""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest

from modules.models.download import DownloadError
from modules.models.hf_download import download_hf, save_token, token_file, token_state
from modules.paths import resolve_paths

PAYLOAD = bytes(range(256)) * 64  # 16 KiB
SHA = hashlib.sha256(PAYLOAD).hexdigest()
COMMIT = "0123456789abcdef0123456789abcdef01234567"
SECRET = "hf_SettingsTokenAbcdefgh12345678"


class _Hub(BaseHTTPRequestHandler):
    seen_auth: list[str] = []

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self, body: bool) -> None:
        _Hub.seen_auth.append(self.headers.get("Authorization", ""))
        parts = self.path.split("?")[0].strip("/").split("/")  # owner/name/resolve/revision/file
        if len(parts) != 5 or parts[2] != "resolve":
            self.send_response(404)
            self.end_headers()
            return
        owner, name, _, revision, filename = parts
        if owner == "gated":
            self.send_response(401)
            self.send_header("X-Error-Code", "GatedRepo")
            self.send_header("X-Error-Message", "Access to model gated/x is restricted.")
            self.end_headers()
            return
        if name == "missing" or filename not in ("model.safetensors", "bad.safetensors"):
            self.send_response(404)
            self.send_header("X-Error-Code", "RepoNotFound" if name == "missing" else "EntryNotFound")
            self.end_headers()
            return
        data = PAYLOAD if filename == "model.safetensors" else PAYLOAD[::-1]
        self.send_response(200)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("X-Linked-Etag", f'"{SHA}"')  # the LFS etag: the good file's SHA-256 (wrong for bad)
        self.send_header("X-Linked-Size", str(len(data)))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(False)

    def do_GET(self) -> None:  # noqa: N802
        self._answer(True)


@pytest.fixture(scope="module")
def hub() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return resolve_paths(tmp_path / "data", None, None)


def test_a_file_comes_through_the_hub_client_into_its_folder_and_the_cache(hub: str, paths: Any) -> None:
    dest = paths.ckpt_dirs[0] / "model.safetensors"
    seen: list[int] = []
    done = download_hf(paths, "owner/repo", "model.safetensors", dest, endpoint=hub,
                       on_progress=lambda p: seen.append(p.done))
    assert done == (dest, True) and dest.read_bytes() == PAYLOAD
    assert seen and seen[-1] == len(PAYLOAD)
    blobs = list((paths.cache_dir / "huggingface").rglob(f"blobs/{SHA}"))
    assert len(blobs) == 1  # huggingface_hub's cache, under the data dir
    assert not list(dest.parent.glob("*.part"))
    with pytest.raises(DownloadError, match="exists already"):
        download_hf(paths, "owner/repo", "model.safetensors", dest, endpoint=hub)


def test_the_settings_token_is_sent_and_never_shown(hub: str, paths: Any, monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_FromTheEnvironment12345678")
    assert token_state(paths).source == "environment"
    state = save_token(paths, SECRET)
    assert state.source == "settings" and SECRET not in state.describe()
    assert token_file(paths).stat().st_mode & 0o077 == 0  # owner only
    assert SECRET not in (paths.settings_file.read_text() if paths.settings_file.exists() else "")
    _Hub.seen_auth.clear()
    download_hf(paths, "owner/repo", "model.safetensors", paths.ckpt_dirs[0] / "m.safetensors", endpoint=hub)
    assert f"Bearer {SECRET}" in _Hub.seen_auth
    with pytest.raises(DownloadError) as failed:
        download_hf(paths, "owner/missing", "model.safetensors", paths.ckpt_dirs[0] / "x.safetensors", endpoint=hub)
    assert SECRET not in str(failed.value) and "no repo owner/missing" in str(failed.value)
    with pytest.raises(DownloadError, match="gated") as gated:
        download_hf(paths, "gated/x", "model.safetensors", paths.ckpt_dirs[0] / "g.safetensors", endpoint=hub)
    assert SECRET not in str(gated.value) and SECRET not in caplog.text
    assert save_token(paths, "").source == "environment"  # forgotten: HF_TOKEN again
    with pytest.raises(DownloadError, match="does not look like"):
        save_token(paths, "two words")


def test_a_wrong_sha256_is_refused_and_nothing_is_left(hub: str, paths: Any) -> None:
    dest = paths.ckpt_dirs[0] / "bad.safetensors"
    with pytest.raises(DownloadError, match="does not match"):
        download_hf(paths, "owner/repo", "bad.safetensors", dest, endpoint=hub)
    assert not dest.exists() and not list((paths.cache_dir / "huggingface").rglob(f"blobs/{SHA}"))
    with pytest.raises(DownloadError, match="does not match"):  # the request's own SHA-256 is checked too
        download_hf(paths, "owner/repo", "model.safetensors", dest, endpoint=hub, sha256="0" * 64)
    assert not dest.exists()


def test_not_enough_disk_space_is_said_before_starting(hub: str, paths: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage(1 << 30, 1 << 30, 1 << 20))
    _Hub.seen_auth.clear()
    with pytest.raises(DownloadError, match="not enough free disk space"):
        download_hf(paths, "owner/repo", "model.safetensors", paths.ckpt_dirs[0] / "d.safetensors", endpoint=hub)
    assert len(_Hub.seen_auth) == 1  # the HEAD only: nothing was downloaded
    assert not (paths.ckpt_dirs[0] / "d.safetensors").exists()


def test_offline_is_a_clear_message_unless_the_cache_has_it(hub: str, paths: Any) -> None:
    with pytest.raises(DownloadError, match=r"cannot reach http://127\.0\.0\.1:9 .*offline\?"):
        download_hf(paths, "owner/repo", "model.safetensors", paths.ckpt_dirs[0] / "o.safetensors",
                    endpoint="http://127.0.0.1:9")
    download_hf(paths, "owner/repo", "model.safetensors", paths.ckpt_dirs[0] / "a.safetensors", endpoint=hub)
    again = paths.vae_dir / "a.safetensors"  # offline now, but in the cache: no network needed
    assert download_hf(paths, "owner/repo", "model.safetensors", again, endpoint="http://127.0.0.1:9") == (again, True)
    assert again.read_bytes() == PAYLOAD


def test_the_download_job_uses_the_hub_client(hub: str, paths: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from modules.jobs.progress import JobControl
    from modules.models.download_job import DownloadModelRequest, run

    monkeypatch.setenv("HF_ENDPOINT", hub)
    ctx = SimpleNamespace(paths=paths, catalog=SimpleNamespace(refresh=lambda: None))
    req = DownloadModelRequest(model_kind="vae", hf_repo="owner/repo", hf_file="model.safetensors")
    result = run(ctx, SimpleNamespace(request=req), JobControl())  # type: ignore[arg-type]
    assert result["file"] == "model.safetensors" and result["sha256_checked"] is True
    assert (paths.vae_dir / "model.safetensors").read_bytes() == PAYLOAD
    assert str(paths.data_dir) not in result["path"]  # shown through ctx.paths.shown


def test_the_settings_page_saves_the_token_without_showing_it(paths: Any) -> None:
    from types import SimpleNamespace

    import gradio as gr

    from webui.hf_token_section import build_hf_token_section

    with gr.Blocks() as page:
        build_hf_token_section(SimpleNamespace(paths=paths))  # type: ignore[arg-type]
    field = next(c for c in page.blocks.values() if getattr(c, "elem_id", None) == "settings_hf_token_value")
    assert field.type == "password"
    save = next(fn for fn in page.fns.values() if fn.name == "on_save")
    cleared, status = save.fn(SECRET)
    assert cleared == "" and SECRET not in status and "saved in Settings" in status
    assert token_state(paths).token == SECRET


def test_the_token_over_the_api_is_never_echoed(paths: Any) -> None:
    from types import SimpleNamespace

    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from modules.api.errors import install_error_handlers
    from modules.api.model_library_routes import build_model_library_router

    app = FastAPI()
    install_error_handlers(app)
    app.include_router(build_model_library_router(SimpleNamespace(paths=paths, library=None, catalog=None,
                                                                  hashes=None, hashing=None)))
    with TestClient(app) as client:
        assert client.get("/api/v1/models/hf-token").json()["source"] is None
        saved = client.post("/api/v1/models/hf-token", json={"token": SECRET})
        assert saved.status_code == 200 and saved.json()["source"] == "settings" and SECRET not in saved.text
        assert SECRET not in client.get("/api/v1/models/hf-token").text
        bad = client.post("/api/v1/models/hf-token", json={"token": SECRET + " x"})
        assert bad.status_code == 400 and SECRET not in bad.text
        assert client.post("/api/v1/models/hf-token", json={"token": ""}).json()["source"] is None
