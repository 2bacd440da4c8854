"""Which server folders a batch job may read from and write to, by a path a user typed.

A folder typed into the UI or sent in a request is a path on the server, so it is accepted only under
an allowed root: the data dir, or a folder the person running the studio allowed with ``--allowed-dir``
(repeatable). Symlinks are resolved before the check (a link inside a root that points outside is
refused), ``..`` cannot climb out, and a file inside an accepted folder that is a link to somewhere
outside is skipped. Whether a path exists is only said for paths inside a root.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

#: the image files a batch folder is read for
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


class FolderNotAllowed(ValueError):
    """A folder path that may not be used (outside the roots, missing, not a folder); message for the user."""


def allowed_roots(data_dir: Path, extra: Iterable[Path] = ()) -> tuple[Path, ...]:
    """The data dir and the ``--allowed-dir`` folders, symlinks resolved, without repeats."""
    roots: list[Path] = []
    for root in (data_dir, *extra):
        real = Path(os.path.realpath(root))
        if real not in roots:
            roots.append(real)
    return tuple(roots)


def roots_of(ctx: object) -> tuple[Path, ...]:
    """The allowed roots of an app context (its data dir and ``flags.allowed_dirs``)."""
    paths, flags = getattr(ctx, "paths"), getattr(ctx, "flags", None)
    return allowed_roots(paths.data_dir, getattr(flags, "allowed_dirs", ()) if flags is not None else ())


def inside(path: Path, roots: Sequence[Path]) -> bool:
    """Whether the real ``path`` is one of ``roots`` or lies under one (``roots`` already resolved)."""
    real = os.path.realpath(path)
    return any(real == str(root) or real.startswith(str(root).rstrip(os.sep) + os.sep) for root in roots)


def resolve_folder(text: str, roots: Sequence[Path], *, what: str = "folder", must_exist: bool = True,
                   create: bool = False) -> Path:
    """The real path of the folder ``text`` names, refused unless it lies under one of ``roots``.

    A relative path is taken from the first root (the data dir). ``must_exist``: the folder must exist;
    ``create``: a missing folder is made (after the check).
    """
    typed = (text or "").strip()
    if not typed:
        raise FolderNotAllowed(f"the {what} is empty: type a folder path")
    if "\x00" in typed:
        raise FolderNotAllowed(f"the {what} {typed!r} is not a valid path")
    if not roots:
        raise FolderNotAllowed("no folder may be used by path on this studio")
    candidate = Path(typed)
    if not candidate.is_absolute():
        candidate = roots[0] / candidate
    real = Path(os.path.realpath(candidate))
    if not inside(real, roots):
        raise FolderNotAllowed(f"the {what} {typed!r} is outside the folders this studio may use: the data dir "
                               "and folders allowed with --allowed-dir")
    if real.exists() and not real.is_dir():
        raise FolderNotAllowed(f"the {what} {typed!r} is not a folder")
    if not real.exists():
        if create:
            real.mkdir(parents=True, exist_ok=True)
        elif must_exist:
            raise FolderNotAllowed(f"the {what} {typed!r} does not exist")
    return real


def image_files(folder: Path, roots: Sequence[Path]) -> list[Path]:
    """The image files of an (accepted) folder, sorted by name; links that lead outside the roots are skipped."""
    return sorted(p for p in folder.iterdir()
                  if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and inside(p, roots))
