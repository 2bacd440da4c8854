"""How the Settings tab lays the settings out: sections (A1111's pages), labels, search, quicksettings.

Data-driven, so settings added elsewhere slot in by themselves:

* a field of :class:`modules.settings.Settings` names its section with
  ``Field(..., json_schema_extra={"section": "Notifications"})``; the studio's own fields are placed by
  :data:`FIELD_SECTIONS`; a field in neither goes to "Other";
* an extension's option (the ``ui_settings`` callback) comes as a :class:`SettingEntry` with its own section;
* a section not in :data:`SECTIONS` is shown after the known ones, in alphabetical order.

:func:`search` is the Settings search box: every word of the query must appear in the key, the label or the
section (case-insensitive), as A1111's search matches the label or the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

#: the sections in the order the tab shows them (A1111's names where it has the section)
SECTIONS: tuple[str, ...] = ("Stable Diffusion", "Sampler parameters", "VAE", "Optimizations", "Saving images/grids",
                             "Infotext", "Live previews", "User interface", "Notifications", "System", "Extensions",
                             "Other")
OTHER = "Other"

#: the section of each of the studio's own settings (A1111's page for the same key)
FIELD_SECTIONS: Mapping[str, str] = {
    "sd_model_checkpoint": "Stable Diffusion",
    "sd_checkpoint_hash": "Stable Diffusion",
    "CLIP_stop_at_last_layers": "Stable Diffusion",
    "sd_prediction_type": "Stable Diffusion",
    "randn_source": "Sampler parameters",
    "sd_vae": "VAE",
    "samples_save": "Saving images/grids",
    "samples_format": "Saving images/grids",
    "grid_save": "Saving images/grids",
    "enable_pnginfo": "Infotext",
    "add_model_hash_to_info": "Infotext",
    "add_model_name_to_info": "Infotext",
    "add_version_to_infotext": "Infotext",
    "live_previews_enable": "Live previews",
    "show_progress_every_n_steps": "Live previews",
    "quicksettings_list": "User interface",
    "return_grid": "User interface",
    "send_seed": "User interface",
    "send_size": "User interface",
    "theme": "User interface",
    "min_free_space_mb": "System",
    "memory_mode": "Optimizations",
    "attention_slicing": "Optimizations",
    "vae_slicing": "Optimizations",
    "vae_tiling": "Optimizations",
    "sd_backend": "Optimizations",
    "openvino_precision": "Optimizations",
    "backend_by_model": "Optimizations",
    "unet_quantization": "Optimizations",
    "torch_compile": "Optimizations",
    "torch_compile_mode": "Optimizations",
    "token_merging_ratio": "Optimizations",
    "token_merging_ratio_img2img": "Optimizations",
    "token_merging_ratio_hr": "Optimizations",
    "notification_audio": "Notifications",
    "notification_browser": "Notifications",
}

#: the quicksettings bar when the setting is missing (A1111's default is only the checkpoint)
DEFAULT_QUICKSETTINGS: tuple[str, ...] = ("sd_model_checkpoint", "sd_vae", "CLIP_stop_at_last_layers")


@dataclass(frozen=True)
class SettingEntry:
    """One setting as the tab lists it."""

    key: str
    label: str
    section: str


def section_of(key: str, info: Any = None) -> str:
    """The section of a settings field: its own ``json_schema_extra["section"]``, else the table, else Other."""
    extra = getattr(info, "json_schema_extra", None)
    if isinstance(extra, dict) and isinstance(extra.get("section"), str) and extra["section"].strip():
        return extra["section"].strip()
    return FIELD_SECTIONS.get(key, OTHER)


def entries_of(fields: Mapping[str, Any]) -> list[SettingEntry]:
    """The entries of a pydantic model's ``model_fields`` (label: the field's description, else its key)."""
    return [SettingEntry(key, getattr(info, "description", None) or key, section_of(key, info))
            for key, info in fields.items()]


def grouped(entries: Iterable[SettingEntry]) -> list[tuple[str, list[SettingEntry]]]:
    """(section, its entries) in :data:`SECTIONS` order, unknown sections after them (alphabetical);
    empty sections are left out; entries keep their order within a section."""
    by_section: dict[str, list[SettingEntry]] = {}
    for entry in entries:
        by_section.setdefault(entry.section, []).append(entry)
    known = [name for name in SECTIONS if name in by_section]
    rest = sorted(name for name in by_section if name not in SECTIONS)
    return [(name, by_section[name]) for name in known + rest]


def matches(entry: SettingEntry, query: str) -> bool:
    """Every word of ``query`` appears in the entry's key, label or section (an empty query matches all)."""
    haystack = f"{entry.key} {entry.label} {entry.section}".lower()
    return all(word in haystack for word in (query or "").lower().split())


def search(entries: Sequence[SettingEntry], query: str) -> set[str]:
    """The keys of the entries that match ``query``."""
    return {entry.key for entry in entries if matches(entry, query)}


def quicksettings(chosen: Iterable[str] | None, known: Iterable[str]) -> list[str]:
    """The quicksettings bar's keys: ``chosen`` (the ``quicksettings_list`` setting) in order, unknown keys
    and repeats left out; None gives :data:`DEFAULT_QUICKSETTINGS`."""
    names = set(known)
    picked: list[str] = []
    for key in DEFAULT_QUICKSETTINGS if chosen is None else chosen:
        key = str(key).strip()
        if key in names and key not in picked:
            picked.append(key)
    return picked
