"""What a LoRA training request can be refused with (light: imported at start-up by the job kind)."""

from __future__ import annotations


class DatasetError(ValueError):
    """The training folder cannot be used (no images, an unreadable image); message for the user."""


class SessionError(ValueError):
    """A session that cannot be resumed with this request; message for the user."""


class TrainingError(ValueError):
    """Training cannot run with this model or request; message for the user."""
