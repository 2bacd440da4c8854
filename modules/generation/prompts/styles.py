"""Prompt styles kept in A1111-compatible ``styles.csv`` files (A1111 ``modules/styles.py``).

Files have the header ``name,prompt,negative_prompt`` (the old ``name,text`` is read too), are read as
``utf-8-sig`` with ``csv.DictReader(skipinitialspace=True)``; rows whose name starts with ``#`` are ignored
and a later file's style replaces an earlier one of the same name.

Applying a style (A1111 ``merge_prompts``): a style text containing ``{prompt}`` has the prompt substituted
there; otherwise the style is appended as ``prompt + ", " + style`` (empty parts are left out). Styles are
applied in the order given, positive and negative alike.

Runner usage::

    store = StyleStore([data_dir / "styles.csv"])
    prompt, negative = store.apply_styles(req.prompt, req.negative_prompt, req.styles)
    store.list_styles()   # GET /sdapi/v1/prompt-styles
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

FIELDS = ("name", "prompt", "negative_prompt")
PROMPT_PLACEHOLDER = "{prompt}"


class StyleError(ValueError):
    """A style that cannot be used or saved (the message is shown to the user)."""


@dataclass(frozen=True)
class PromptStyle:
    """One style: its name, prompt text and negative prompt text, and the file it came from."""

    name: str
    prompt: str = ""
    negative_prompt: str = ""
    path: Path | None = None

    def as_api(self) -> dict[str, str]:
        """The ``/sdapi/v1/prompt-styles`` item."""
        return {"name": self.name, "prompt": self.prompt, "negative_prompt": self.negative_prompt}


def merge_prompts(style_prompt: str, prompt: str) -> str:
    """Apply one style text to a prompt (A1111 ``merge_prompts``)."""
    if PROMPT_PLACEHOLDER in style_prompt:
        return style_prompt.replace(PROMPT_PLACEHOLDER, prompt)
    return ", ".join(part for part in (prompt.strip(), style_prompt.strip()) if part)


def extract_style_text(style_text: str, prompt: str) -> tuple[bool, str]:
    """Undo :func:`merge_prompts` for one style text: ``(matched, prompt without the style)``."""
    stripped_prompt = prompt.strip()
    stripped_style = style_text.strip()
    if PROMPT_PLACEHOLDER in stripped_style:
        left, right = stripped_style.split(PROMPT_PLACEHOLDER, 1)
        if stripped_prompt.startswith(left) and stripped_prompt.endswith(right):
            return True, stripped_prompt[len(left):len(stripped_prompt) - len(right)]
    elif stripped_prompt.endswith(stripped_style):
        rest = stripped_prompt[:len(stripped_prompt) - len(stripped_style)]
        return True, rest[:-2] if rest.endswith(", ") else rest
    return False, prompt


def _extract_one(style: PromptStyle, prompt: str, negative: str) -> tuple[bool, str, str]:
    if not style.prompt and not style.negative_prompt:
        return False, prompt, negative
    matched, new_prompt = extract_style_text(style.prompt, prompt)
    if not matched:
        return False, prompt, negative
    matched, new_negative = extract_style_text(style.negative_prompt, negative)
    if not matched:
        return False, prompt, negative
    return True, new_prompt, new_negative


def extract_styles(prompt: str, negative: str, styles: Sequence[PromptStyle]) -> tuple[str, str, list[str]]:
    """Find which of ``styles`` were applied to the prompts (A1111 ``extract_styles_from_prompt``).

    Repeatedly strips the first matching style (outermost first); returns the remaining prompt, negative
    prompt and the found style names in application order.
    """
    found: list[str] = []
    candidates = list(styles)
    while True:
        for style in candidates:
            matched, new_prompt, new_negative = _extract_one(style, prompt, negative)
            if matched:
                prompt, negative = new_prompt, new_negative
                candidates.remove(style)
                found.append(style.name)
                break
        else:
            break
    return prompt, negative, list(reversed(found))


def read_styles_csv(path: Path) -> list[PromptStyle]:
    """The styles of one CSV file (missing file: none)."""
    path = Path(path)
    if not path.is_file():
        return []
    styles: list[PromptStyle] = []
    with open(path, "r", encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle, skipinitialspace=True)
        if reader.fieldnames is None:
            return []
        if "name" not in reader.fieldnames or not ({"prompt", "text"} & set(reader.fieldnames)):
            raise StyleError(f"{path} is not a styles file: the header must be name,prompt,negative_prompt")
        for row in reader:
            name = row.get("name") or ""
            if not name or name.startswith("#"):
                continue
            prompt = row["prompt"] if "prompt" in row else row.get("text")
            styles.append(PromptStyle(name, prompt or "", row.get("negative_prompt") or "", path))
    return styles


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` via a temp file in the same folder and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8-sig", newline="") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class StyleStore:
    """Styles from one or more CSV files; the first file is where new styles are saved."""

    def __init__(self, paths: Sequence[Path]) -> None:
        if not paths:
            raise StyleError("no styles file configured")
        self.paths = [Path(p) for p in paths]
        self._styles: dict[str, PromptStyle] = {}
        self.reload()

    def reload(self) -> None:
        """Re-read every file (later files override earlier ones for equal names)."""
        styles: dict[str, PromptStyle] = {}
        for path in self.paths:
            for style in read_styles_csv(path):
                styles[style.name] = style
        self._styles = styles

    def names(self) -> list[str]:
        return list(self._styles)

    def get(self, name: str) -> PromptStyle:
        """The named style; unknown names raise :class:`StyleError`."""
        style = self._styles.get(name)
        if style is None:
            known = ", ".join(self._styles) or "none defined"
            raise StyleError(f"unknown style '{name}' (known styles: {known})")
        return style

    def list_styles(self) -> list[dict[str, str]]:
        """``[{name, prompt, negative_prompt}]`` as ``GET /sdapi/v1/prompt-styles`` returns."""
        return [style.as_api() for style in self._styles.values()]

    def apply_styles(self, prompt: str, negative: str, names: Iterable[str]) -> tuple[str, str]:
        """Apply the named styles, in order, to the prompt and negative prompt."""
        styles = [self.get(name) for name in names]
        for style in styles:
            prompt = merge_prompts(style.prompt, prompt)
            negative = merge_prompts(style.negative_prompt, negative)
        return prompt, negative

    def extract_styles(self, prompt: str, negative: str,
                       names: Iterable[str] | None = None) -> tuple[str, str, list[str]]:
        """:func:`extract_styles` over the stored styles (or only ``names``)."""
        candidates = list(self._styles.values()) if names is None else [self.get(n) for n in names]
        return extract_styles(prompt, negative, candidates)

    def save_style(self, name: str, prompt: str, negative_prompt: str = "") -> PromptStyle:
        """Add or replace a style and rewrite the file it belongs to (a new style goes to the first file)."""
        name = name.strip()
        if not name or name.startswith("#"):
            raise StyleError("a style needs a name that does not start with '#'")
        existing = self._styles.get(name)
        path = existing.path if existing is not None and existing.path is not None else self.paths[0]
        style = PromptStyle(name, prompt, negative_prompt, path)
        self._styles[name] = style
        self._write_file(path)
        return style

    def delete_style(self, name: str) -> None:
        """Remove a style from its file."""
        style = self.get(name)
        del self._styles[name]
        self._write_file(style.path or self.paths[0])

    def _write_file(self, path: Path) -> None:
        """Rewrite ``path``: its rows in file order (a name that a later file overrides keeps its row here,
        deleted names are dropped), then this file's new styles."""
        rows: list[PromptStyle] = []
        seen: set[str] = set()
        for on_disk in read_styles_csv(path):
            current = self._styles.get(on_disk.name)
            if current is None:
                continue
            rows.append(current if current.path == path else on_disk)
            seen.add(on_disk.name)
        rows += [s for s in self._styles.values() if s.path == path and s.name not in seen]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=FIELDS, lineterminator="\n")
        writer.writeheader()
        for style in rows:
            writer.writerow({"name": style.name, "prompt": style.prompt, "negative_prompt": style.negative_prompt})
        _write_atomic(path, buffer.getvalue())
