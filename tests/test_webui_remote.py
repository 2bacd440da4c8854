"""Remote access offline: --share and --ngrok each say so in one line and the studio keeps serving
locally; both need auth (or --insecure) like --listen."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from modules.flags import FlagError, parse_flags
from modules.remote import start_remote_access
from tests.helpers.server import free_port

REPO = Path(__file__).resolve().parent.parent


def test_ngrok_flag_needs_a_token_and_auth() -> None:
    assert parse_flags(["--ngrok", "tok_123", "--gradio-auth", "u:p"]).ngrok == "tok_123"
    assert parse_flags(["--ngrok", "tok_123", "--insecure"]).is_public
    with pytest.raises(FlagError, match="--ngrok exposes the studio"):
        parse_flags(["--ngrok", "tok_123"])
    with pytest.raises(FlagError, match="auth token"):
        parse_flags(["--ngrok", "  ", "--insecure"])


def test_offline_share_and_ngrok_each_say_so_in_one_line(no_network: None, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import pyngrok.conf

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # where Gradio would keep its frpc binary
    monkeypatch.setattr(pyngrok.conf, "DEFAULT_NGROK_PATH", str(tmp_path / "ngrok" / "ngrok"))
    lines: list[str] = []
    flags = parse_flags(["--share", "--ngrok", "tok_123", "--insecure", "--port", "7999"])
    started = time.monotonic()
    assert start_remote_access(flags, say=lines.append) == []
    assert time.monotonic() - started < 30
    assert len(lines) == 2 and all("\n" not in line for line in lines)
    assert lines[0].startswith("--share: no public URL") and "http://127.0.0.1:7999" in lines[0]
    assert lines[1].startswith("--ngrok: no public URL") and "served locally" in lines[1]


def test_offline_flag_skips_tunnels_without_trying() -> None:
    lines: list[str] = []
    flags = parse_flags(["--share", "--ngrok", "tok", "--insecure", "--offline"])
    assert start_remote_access(flags, say=lines.append) == []
    assert lines == [f"{flag}: no public URL because of --offline; the studio is served locally at "
                     f"http://127.0.0.1:7860" for flag in ("--share", "--ngrok")]


@pytest.mark.slow
def test_launch_with_share_offline_keeps_serving_locally(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
           "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9", "NO_PROXY": "",
           "HF_HOME": str(tmp_path / "hf")}  # a dead proxy: offline, whatever this machine can reach
    proc = subprocess.Popen([sys.executable, "launch.py", "--data-dir", str(tmp_path), "--port", str(port),
                             "--skip-load-model-at-start", "--share", "--gradio-auth", "u:pw"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, lines = time.monotonic() + 90, []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
            if line.startswith("--share:"):
                break
        share = [line for line in lines if line.startswith("--share:")]
        assert share and "no public URL" in share[0] and f"http://127.0.0.1:{port}" in share[0], lines
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=10, follow_redirects=True)
        assert page.status_code == 200, "the studio still serves locally (login page)"
    finally:
        proc.terminate()
        proc.wait(15)
