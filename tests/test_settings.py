"""Settings persist atomically and refuse unknown keys or invalid values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modules.settings import SettingsError, SettingsStore


def test_update_persists_and_reloads(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    store = SettingsStore(path)
    store.update({"CLIP_stop_at_last_layers": 2, "show_progress_every_n_steps": 3})
    again = SettingsStore(path)
    assert again.current.CLIP_stop_at_last_layers == 2
    assert again.current.show_progress_every_n_steps == 3


def test_unknown_and_invalid_values_are_refused_whole(tmp_path: Path) -> None:
    store = SettingsStore(tmp_path / "config.json")
    with pytest.raises(SettingsError, match="unknown setting"):
        store.update({"no_such_option": 1})
    with pytest.raises(SettingsError, match="CLIP_stop_at_last_layers"):
        store.update({"CLIP_stop_at_last_layers": 99, "show_progress_every_n_steps": 2})
    assert store.current.show_progress_every_n_steps == 5  # all-or-nothing


def test_read_only_setting(tmp_path: Path) -> None:
    store = SettingsStore(tmp_path / "config.json")
    with pytest.raises(SettingsError, match="read-only"):
        store.update({"sd_checkpoint_hash": "abc"})


def test_corrupt_file_falls_back_and_keeps_valid_values(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("{not json", encoding="utf-8")
    assert SettingsStore(path).current.CLIP_stop_at_last_layers == 1
    path.write_text(json.dumps({"CLIP_stop_at_last_layers": 50, "samples_save": False, "junk": 1}), encoding="utf-8")
    store = SettingsStore(path)
    assert store.current.samples_save is False
    assert store.current.CLIP_stop_at_last_layers == 1
