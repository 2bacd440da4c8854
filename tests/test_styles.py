"""styles.csv reading, applying, extracting and saving (A1111 ``modules/styles.py`` semantics)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from modules.generation.prompts.styles import (
    PromptStyle,
    StyleError,
    StyleStore,
    extract_style_text,
    extract_styles,
    merge_prompts,
)


def _write(path: Path, text: str, *, bom: bool = True) -> Path:
    path.write_text(text, encoding="utf-8-sig" if bom else "utf-8")
    return path


@pytest.fixture
def styles_csv(tmp_path: Path) -> Path:
    return _write(tmp_path / "styles.csv", (
        "name,prompt,negative_prompt\n"
        "quality, \"masterpiece, best quality\", \"lowres, blurry\"\n"
        "# commented,\"ignored\",\"\"\n"
        "frame,\"a painting of {prompt}, framed\",\n"
        "neg only,,\"bad hands\"\n"
    ))


def test_reads_a1111_csv(styles_csv: Path) -> None:
    store = StyleStore([styles_csv])
    assert store.names() == ["quality", "frame", "neg only"]
    assert store.list_styles() == [
        {"name": "quality", "prompt": "masterpiece, best quality", "negative_prompt": "lowres, blurry"},
        {"name": "frame", "prompt": "a painting of {prompt}, framed", "negative_prompt": ""},
        {"name": "neg only", "prompt": "", "negative_prompt": "bad hands"},
    ]


def test_reads_old_name_text_format_and_later_files_override(tmp_path: Path) -> None:
    old = _write(tmp_path / "old.csv", "name,text\nsketch,pencil sketch\nshared,from old\n", bom=False)
    new = _write(tmp_path / "new.csv", "name,prompt,negative_prompt\nshared,from new,neg\n")
    store = StyleStore([old, new, tmp_path / "missing.csv"])
    assert store.get("sketch") == PromptStyle("sketch", "pencil sketch", "", old)
    assert store.get("shared").prompt == "from new"


def test_bad_header_is_a_clear_error(tmp_path: Path) -> None:
    bad = _write(tmp_path / "bad.csv", "title,body\nx,y\n")
    with pytest.raises(StyleError, match="not a styles file"):
        StyleStore([bad])


def test_merge_prompts_rules() -> None:
    assert merge_prompts("masterpiece", "a cat") == "a cat, masterpiece"
    assert merge_prompts("masterpiece", "  ") == "masterpiece"
    assert merge_prompts("", "a cat ") == "a cat"
    assert merge_prompts("art of {prompt}, 4k", "a cat") == "art of a cat, 4k"


def test_apply_styles_in_order(styles_csv: Path) -> None:
    store = StyleStore([styles_csv])
    prompt, negative = store.apply_styles("a cat", "ugly", ["frame", "quality"])
    assert prompt == "a painting of a cat, framed, masterpiece, best quality"
    assert negative == "ugly, lowres, blurry"
    assert store.apply_styles("a cat", "", []) == ("a cat", "")


def test_unknown_style_is_a_clear_error(styles_csv: Path) -> None:
    store = StyleStore([styles_csv])
    with pytest.raises(StyleError, match=r"unknown style 'nope' \(known styles: quality, frame, neg only\)"):
        store.apply_styles("a", "", ["quality", "nope"])


def test_extract_style_text_a1111_examples() -> None:
    assert extract_style_text("masterpiece", "1girl, art by greg, masterpiece") == (True, "1girl, art by greg")
    assert extract_style_text("masterpiece, {prompt}", "masterpiece, 1girl, art by greg") == (
        True, "1girl, art by greg")
    assert extract_style_text("masterpiece, {prompt}", "exquisite, 1girl, art by greg") == (
        False, "exquisite, 1girl, art by greg")


def test_extract_styles_round_trip(styles_csv: Path) -> None:
    store = StyleStore([styles_csv])
    prompt, negative = store.apply_styles("a cat", "ugly", ["frame", "quality"])
    assert store.extract_styles(prompt, negative) == ("a cat", "ugly", ["frame", "quality"])
    # a style whose negative text is absent does not match
    assert extract_styles("a cat, masterpiece, best quality", "ugly", [store.get("quality")]) == (
        "a cat, masterpiece, best quality", "ugly", [])
    assert store.extract_styles("a cat", "x", names=["quality"]) == ("a cat", "x", [])


def test_save_style_is_written_and_reloadable(styles_csv: Path, tmp_path: Path) -> None:
    store = StyleStore([styles_csv])
    store.save_style("new, \"quoted\"", "with {prompt}", "bad")
    store.save_style("quality", "hq", "lq")  # replaces in place
    reread = StyleStore([styles_csv])
    assert reread.get("new, \"quoted\"") == PromptStyle("new, \"quoted\"", "with {prompt}", "bad", styles_csv)
    assert reread.names() == ["quality", "frame", "neg only", "new, \"quoted\""]
    assert reread.get("quality").prompt == "hq"
    raw = styles_csv.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbfname,prompt,negative_prompt\n")
    with open(styles_csv, encoding="utf-8-sig", newline="") as handle:
        assert next(csv.reader(handle)) == ["name", "prompt", "negative_prompt"]
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]


def test_save_goes_to_the_style_file_and_delete(tmp_path: Path) -> None:
    first = _write(tmp_path / "a.csv", "name,prompt,negative_prompt\nx,1,\n")
    second = _write(tmp_path / "b.csv", "name,prompt,negative_prompt\ny,2,\n")
    store = StyleStore([first, second])
    store.save_style("y", "22")
    store.save_style("z", "3")
    assert StyleStore([second]).get("y").prompt == "22"
    assert StyleStore([first]).names() == ["x", "z"]
    store.delete_style("x")
    assert StyleStore([first]).names() == ["z"]
    with pytest.raises(StyleError, match="needs a name"):
        store.save_style("  ", "p")
