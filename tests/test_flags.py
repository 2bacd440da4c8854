"""launch.py flags: A1111 spellings, one-line errors, safe defaults for exposure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from modules.flags import FlagError, parse_flags

REPO = Path(__file__).resolve().parent.parent


def test_defaults_bind_localhost_7860() -> None:
    flags = parse_flags([])
    assert flags.host == "127.0.0.1"
    assert flags.effective_port == 7860
    assert not flags.api_enabled


def test_nowebui_serves_api_on_7861() -> None:
    flags = parse_flags(["--nowebui"])
    assert flags.api_enabled and flags.effective_port == 7861


def test_all_a1111_flags_parse(tmp_path: Path) -> None:
    ckpt = tmp_path / "m.safetensors"
    ckpt.write_bytes(b"x")
    flags = parse_flags(["--port", "7999", "--listen", "--api", "--ckpt", str(ckpt), "--ckpt-dir", str(tmp_path),
                         "--lora-dir", str(tmp_path), "--data-dir", str(tmp_path / "d"), "--api-auth", "a:b",
                         "--gradio-auth", "u:p,v:q", "--use-cpu", "all", "--no-half", "--medvram", "--offline"])
    assert flags.host == "0.0.0.0" and flags.effective_port == 7999
    assert flags.gradio_auth == (("u", "p"), ("v", "q"))
    assert flags.api_auth == (("a", "b"),)
    assert flags.use_cpu == ("all",) and flags.memory_mode == "medvram" and flags.offline


@pytest.mark.parametrize("argv, fragment", [
    (["--port", "99999"], "--port"),
    (["--port", "abc"], "invalid int"),
    (["--lowvram", "--medvram"], "cannot be used together"),
    (["--listen"], "--gradio-auth"),
    (["--share"], "--gradio-auth"),
    (["--listen", "--gradio-auth", "u:p", "--api"], "--api-auth"),
    (["--listen", "--nowebui"], "--api-auth"),
    (["--gradio-auth", "nopassword"], "user:password"),
    (["--ckpt", "/no/such/file.safetensors"], "does not exist"),
    (["--bogus"], "unrecognized"),
])
def test_bad_flags_are_one_line_errors(argv: list[str], fragment: str) -> None:
    with pytest.raises(FlagError) as info:
        parse_flags(argv)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_insecure_opt_out_allows_public_listen() -> None:
    assert parse_flags(["--listen", "--insecure"]).host == "0.0.0.0"


@pytest.mark.slow
def test_launch_prints_one_line_for_bad_flag() -> None:
    proc = subprocess.run([sys.executable, "launch.py", "--lowvram", "--medvram"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("launch.py: error:")
