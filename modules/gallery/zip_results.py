"""A Zip of the images a result gallery shows (A1111's 🗃️ Zip button).

The archive holds each file once, under its own name (a repeated name gets ``-2``, ``-3``...), and is
written atomically into ``folder`` (the web UI gives its download cache) as ``images-<stamp>.zip``.
Only files under one of ``allowed`` roots are packed: a page names files, and only those the studio
itself handed out (its cache) or saved (its outputs) may leave it.
"""

from __future__ import annotations

import os
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Iterable, Sequence


class ZipError(ValueError):
    """Nothing to pack (the message is shown to the user)."""


def _allowed(path: Path, roots: Sequence[Path]) -> bool:
    return any(path.is_relative_to(root) for root in roots)


def zip_files(files: Iterable[Path | str], folder: Path, allowed: Sequence[Path]) -> Path:
    """Pack ``files`` into a new zip in ``folder``; raises :class:`ZipError` when none can be packed."""
    roots = [Path(root).resolve() for root in allowed]
    chosen: list[Path] = []
    for raw in files:
        path = Path(raw).resolve()
        if path.is_file() and _allowed(path, roots) and path not in chosen:
            chosen.append(path)
    if not chosen:
        raise ZipError("No images to zip: generate some first.")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"images-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{time.monotonic_ns() % 10**6}.zip"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".zip-", suffix=".tmp")
    names: set[str] = set()
    try:
        with os.fdopen(fd, "wb") as handle, zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_STORED) as archive:
            for path in chosen:
                name, number = path.name, 1
                while name in names:
                    number += 1
                    name = f"{path.stem}-{number}{path.suffix}"
                names.add(name)
                archive.write(path, arcname=name)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
