"""The Settings tab's layout (modules/settings_layout.py): every setting in a section, A1111's section names,
sections from a field's own ``json_schema_extra`` (how other settings slot in), the search box's matching,
the quicksettings list; and the settings the tab added (quicksettings, grid, theme) round-trip the store."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from modules.settings import Settings, SettingsError, SettingsStore
from modules.settings_layout import (DEFAULT_QUICKSETTINGS, FIELD_SECTIONS, OTHER, SECTIONS, SettingEntry,
                                     entries_of, grouped, quicksettings, search, section_of)


def test_the_studios_settings_sit_in_a1111s_sections() -> None:
    entries = entries_of(Settings.model_fields)
    assert {e.key for e in entries} == set(Settings.model_fields)
    by_key = {e.key: e for e in entries}
    unknown = {key: section for key, section in FIELD_SECTIONS.items() if section not in SECTIONS}
    assert not unknown, f"the table names sections the tab does not list: {unknown}"
    assert by_key["sd_vae"].section == "VAE"
    assert by_key["CLIP_stop_at_last_layers"].section == "Stable Diffusion"
    assert by_key["CLIP_stop_at_last_layers"].label == "Clip skip"
    assert by_key["samples_save"].section == by_key["grid_save"].section == "Saving images/grids"
    assert by_key["quicksettings_list"].section == "User interface"


def test_a_field_names_its_own_section_and_unknown_sections_come_last() -> None:
    class More(BaseModel):
        notify_sound: bool = Field(False, description="Play a sound", json_schema_extra={"section": "Notifications"})
        zebra: int = Field(1, description="Zebra", json_schema_extra={"section": "Zoo"})
        loose: int = Field(1)
        samples_save: bool = Field(True, description="Always save")

    assert section_of("notify_sound", More.model_fields["notify_sound"]) == "Notifications"
    order = [name for name, _ in grouped(entries_of(More.model_fields))]
    assert order == ["Saving images/grids", "Notifications", "Other", "Zoo"]
    assert order.index("Notifications") > order.index("Saving images/grids")
    assert list(SECTIONS).index("Notifications") < list(SECTIONS).index(OTHER)


def test_search_matches_key_label_or_section_every_word() -> None:
    entries = entries_of(Settings.model_fields)
    assert search(entries, "clip") == {"CLIP_stop_at_last_layers", "gallery_search_model"}  # its label names CLIP
    assert "sd_vae" in search(entries, "VAE") and "samples_save" not in search(entries, "VAE")
    assert search(entries, "grid") == {"return_grid", "grid_save", "samples_save", "samples_format"}
    assert search(entries, "save grid") == {"grid_save", "samples_save"}
    assert search(entries, "infotext model hash") == {"add_model_hash_to_info"}
    assert search(entries, "") == set(Settings.model_fields)
    assert search(entries, "no such thing") == set()
    assert search([SettingEntry("x_opt", "Frobnicate", "Extensions")], "extensions") == {"x_opt"}


def test_quicksettings_keep_order_drop_unknown_and_default() -> None:
    known = set(Settings.model_fields)
    assert quicksettings(None, known) == list(DEFAULT_QUICKSETTINGS)
    assert quicksettings(["sd_vae", "nope", "sd_vae", " CLIP_stop_at_last_layers "], known) == \
        ["sd_vae", "CLIP_stop_at_last_layers"]
    assert Settings().quicksettings_list == list(DEFAULT_QUICKSETTINGS)


def test_new_settings_persist_and_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    store = SettingsStore(path)
    store.update({"quicksettings_list": ["sd_model_checkpoint", "sd_vae"], "return_grid": False, "theme": "dark"})
    again = SettingsStore(path).current
    assert (again.quicksettings_list, again.return_grid, again.grid_save, again.theme) == \
        (["sd_model_checkpoint", "sd_vae"], False, True, "dark")
    with pytest.raises(SettingsError, match="theme"):
        store.update({"theme": "purple"})


def test_settings_tab_reads_tables_and_lists_as_json_and_sliders_as_ints() -> None:
    from webui.settings_tab import coerce

    class Model(BaseModel):
        table: dict[str, int] = Field(default_factory=dict)
        steps: int = 1

    fields = Model.model_fields
    assert coerce(fields["table"], '{"a.safetensors": 2}') == {"a.safetensors": 2}
    assert coerce(fields["table"], {"kept": 1}) == {"kept": 1}
    assert coerce(fields["steps"], 3.0) == 3 and isinstance(coerce(fields["steps"], 3.0), int)
    with pytest.raises(ValueError, match="not JSON"):
        coerce(fields["table"], "{broken")
