"""Backend names and the remote service's settings (the key from the environment or the key file, never shown)."""

from __future__ import annotations

import pytest

from modules.settings import Settings
from modules.understanding.backends.base import BackendUnavailable
from modules.understanding.services import KEY_FILE, UnderstandingServices, UnknownBackend
from modules.understanding.streams import TextStreams


def services(tmp_path, **settings) -> UnderstandingServices:
    current = Settings(**settings)
    return UnderstandingServices(data_dir=tmp_path, repo_root=tmp_path / "repo", settings=lambda: current)


def test_backend_names(tmp_path):
    svc = services(tmp_path)
    (tmp_path / "models" / "VLM" / "mine").mkdir(parents=True)
    (tmp_path / "models" / "VLM" / "mine" / "config.json").write_text("{}")
    assert svc.check_name("default") == "default" and svc.check_name("atelier-ocr") == "ocr"
    with pytest.raises(UnknownBackend, match="no model folder 'mine'"):  # no processor files yet
        svc.check_name("local:mine")
    (tmp_path / "models" / "VLM" / "mine" / "tokenizer_config.json").write_text("{}")
    assert svc.check_name("local:mine") == "local:mine" and svc.local_models() == ["local:mine"]
    for bad in ("local:../x", "local:", "gpt", "local:other"):
        with pytest.raises(UnknownBackend):
            svc.check_name(bad)


def test_remote_settings_and_key(tmp_path, monkeypatch):
    with pytest.raises(BackendUnavailable, match="vlm_api_base_url"):
        services(tmp_path).remote_config()
    svc = services(tmp_path, vlm_api_base_url="http://127.0.0.1:9/v1", vlm_api_model="m", vlm_api_key_env="MY_KEY")
    monkeypatch.delenv("MY_KEY", raising=False)
    assert svc.remote_config().api_key is None
    (tmp_path / KEY_FILE).write_text("file-key-123\n")
    assert svc.remote_config().api_key == "file-key-123"
    monkeypatch.setenv("MY_KEY", "env-key-456")
    config = svc.remote_config()
    assert config.api_key == "env-key-456" and "env-key-456" not in repr(config)


def test_text_streams():
    streams = TextStreams(keep=2)
    streams.append("a", "hel")
    streams.append("a", "lo")
    assert streams.read("a", 0, timeout=0) == (["hel", "lo"], False)
    streams.finish("a")
    assert streams.read("a", 2, timeout=0) == ([], True)
    streams.append("b", "x")
    streams.append("c", "y")  # over the bound: the finished stream goes first
    assert streams.read("b", 0, timeout=0) == (["x"], False)
    assert streams.read("a", 0, timeout=0) == ([], False)  # gone (a new, empty one)
