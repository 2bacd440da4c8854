"""Tag formatting in the booru/kohya style: underscores or spaces, escaped brackets (A1111 prompt syntax), a
blacklist (exact tags or ``*`` wildcards, compared without case and with ``_`` and spaces alike). Kaomoji
such as ``^_^`` or ``:d`` keep their underscores whatever the choice."""

from __future__ import annotations

import fnmatch
import re
from typing import Sequence

_WORDLIKE = re.compile(r"[A-Za-z]{2,}")


def is_kaomoji(tag: str) -> bool:
    return bool(tag) and _WORDLIKE.search(tag) is None


def _key(tag: str) -> str:
    return re.sub(r"[\s_]+", " ", tag.strip().lower())


def split_tags(text: str) -> list[str]:
    """Tags from a model's answer: comma or line separated, bullets and numbering removed."""
    tags = []
    for part in re.split(r"[,\n]", text):
        part = re.sub(r"^\s*(?:[-*•]|\d+[.)])\s*", "", part).strip().strip(".")
        if part:
            tags.append(part)
    return tags


def format_tags(tags: Sequence[str], *, underscores: bool = False, escape_brackets: bool = True,
                blacklist: Sequence[str] = (), max_tags: int | None = None) -> list[str]:
    patterns = [_key(b) for b in blacklist if b.strip()]
    out: list[str] = []
    seen: set[str] = set()
    for raw in tags:
        tag = re.sub(r"\s+", " ", raw.strip())
        if not tag:
            continue
        key = _key(tag)
        if key in seen or any(fnmatch.fnmatchcase(key, p) for p in patterns):
            continue
        seen.add(key)
        if not is_kaomoji(tag):
            tag = tag.replace(" ", "_") if underscores else tag.replace("_", " ")
        if escape_brackets:
            tag = re.sub(r"(?<!\\)([()\[\]])", r"\\\1", tag)
        out.append(tag)
        if max_tags is not None and len(out) >= max_tags:
            break
    return out
