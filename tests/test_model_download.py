"""Model downloads (issue 28): resume with Range after an interruption, a checksum that does not match
(refused, nothing left), a server that cannot resume, clear messages, and the download_model job."""

from __future__ import annotations

import hashlib
import http.server
import threading
from pathlib import Path
from typing import Iterator

import pytest

from modules.models.download import DownloadError, Source, fetch, resolve_source

PAYLOAD = bytes(range(256)) * 4096 * 3  # 3 MiB: several chunks
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    ranges = True
    seen: list[str] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        type(self).seen.append(self.headers.get("Range") or "")
        if self.path.startswith("/missing"):
            self.send_error(404)
            return
        if self.path.startswith("/api/v1/model-versions/42"):
            body = (b'{"files": [{"name": "civ.safetensors", "primary": true, "hashes": {"SHA256": "%s"}, '
                    b'"downloadUrl": "http://127.0.0.1:%d/model.bin"}]}' % (SHA.upper().encode(), self.server.server_port))
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        start = 0
        wanted = self.headers.get("Range")
        if wanted and type(self).ranges:
            start = int(wanted.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD) - start))
        self.end_headers()
        self.wfile.write(PAYLOAD[start:])


@pytest.fixture()
def server() -> Iterator[str]:
    _Handler.ranges, _Handler.seen = True, []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()


def test_interrupted_download_resumes_with_range(server: str, tmp_path: Path) -> None:
    dest = tmp_path / "model.safetensors"
    source = Source(url=f"{server}/model.bin", filename=dest.name, sha256=SHA)
    assert fetch(source, dest, should_stop=lambda: True) is None  # stopped after the first chunk
    part = dest.with_name(dest.name + ".part")
    assert part.is_file() and 0 < part.stat().st_size < len(PAYLOAD) and not dest.exists()
    assert fetch(source, dest) == dest
    assert dest.read_bytes() == PAYLOAD and not part.exists()
    assert _Handler.seen[-1] == f"bytes={1 << 20}-"


def test_server_without_range_starts_over(server: str, tmp_path: Path) -> None:
    _Handler.ranges = False
    dest = tmp_path / "m.bin"
    source = Source(url=f"{server}/model.bin", filename=dest.name, sha256=SHA)
    fetch(source, dest, should_stop=lambda: True)
    assert fetch(source, dest) == dest and dest.read_bytes() == PAYLOAD


def test_checksum_mismatch_is_refused_and_nothing_is_left(server: str, tmp_path: Path) -> None:
    dest = tmp_path / "bad.safetensors"
    with pytest.raises(DownloadError, match="does not match.*deleted"):
        fetch(Source(url=f"{server}/model.bin", filename=dest.name, sha256="0" * 64), dest)
    assert list(tmp_path.iterdir()) == []


def test_clear_messages(server: str, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="answered 404"):
        fetch(Source(url=f"{server}/missing", filename="x"), tmp_path / "x")
    with pytest.raises(DownloadError, match="cannot download.*offline"):
        fetch(Source(url="http://127.0.0.1:9/x", filename="x", secrets=("s3cret",),
                     headers={"Authorization": "Bearer s3cret"}), tmp_path / "y")
    with pytest.raises(DownloadError, match="not an http"):
        resolve_source(url="file:///etc/passwd")
    with pytest.raises(DownloadError, match="usable file name"):
        resolve_source(url=f"{server}/model.bin", filename="../..")
    hf = resolve_source(hf_repo="owner/repo", hf_file="sub/v1.safetensors", hf_token="tok", hf_base="http://h")
    assert hf.url == "http://h/owner/repo/resolve/main/sub/v1.safetensors" and hf.filename == "v1.safetensors"
    assert hf.headers == {"Authorization": "Bearer tok"}


def test_civitai_version_gives_name_and_checksum(server: str) -> None:
    source = resolve_source(civitai_version=42, civitai_base=server)
    assert source.filename == "civ.safetensors" and source.sha256 == SHA and source.url.endswith("/model.bin")


def test_download_job_puts_the_file_in_its_folder(studio_factory, server: str) -> None:
    from modules.jobs.model import JobState
    from modules.jobs.submit import submit_job
    from modules.models.download_job import DownloadModelRequest

    ctx = studio_factory(("--nowebui",), load=False).ctx
    job = submit_job(ctx, DownloadModelRequest(model_kind="lora", url=f"{server}/model.bin", sha256=SHA,
                                               filename="fetched.safetensors"), owner="t", source="test")
    ctx.queue.wait(job.id, 60)
    assert job.state is JobState.SUCCEEDED, job.error
    assert (ctx.paths.lora_dir / "fetched.safetensors").read_bytes() == PAYLOAD
    assert job.result["sha256_checked"] and job.lane == "download"
    with pytest.raises(DownloadError, match="exactly one source"):
        submit_job(ctx, DownloadModelRequest(), owner="t", source="test")
