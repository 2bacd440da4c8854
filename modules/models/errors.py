"""Errors raised while reading, detecting or loading model files."""

from __future__ import annotations

from pathlib import Path


class ModelLoadError(Exception):
    """A model file or folder cannot be read, recognised or loaded.

    The message always names the file and the reason, on one line.
    """

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot load model '{self.path.name}': {reason}")
