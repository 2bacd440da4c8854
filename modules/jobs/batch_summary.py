"""What a batch job did with each of its inputs: how many were done, which failed and why.

A batch (img2img over many images, Extras over many images) goes on past an input it cannot use: the
input is recorded as failed with its reason, and the job's result carries this summary (the UI shows
its :meth:`BatchSummary.text`, the job store keeps :meth:`BatchSummary.as_dict`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class BatchSummary:
    """The inputs of one batch job: ``total`` of them, ``done`` finished, ``failed`` (name, reason)."""

    total: int = 0
    done: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    interrupted: bool = False

    def fail(self, name: str, reason: str) -> None:
        self.failed.append((name, reason))

    @property
    def skipped(self) -> int:
        """Inputs never reached (the batch was interrupted)."""
        return max(self.total - self.done - len(self.failed), 0)

    def text(self) -> str:
        """One line for the user: "3 done, 1 failed (b.png: not an image file)", and what an interrupt left."""
        parts = [f"{self.done} of {self.total} done"]
        if self.failed:
            reasons = "; ".join(f"{name}: {reason}" for name, reason in self.failed[:5])
            more = f"; and {len(self.failed) - 5} more" if len(self.failed) > 5 else ""
            parts.append(f"{len(self.failed)} failed ({reasons}{more})")
        if self.interrupted and self.skipped:
            parts.append(f"{self.skipped} not started (interrupted)")
        return ", ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {"total": self.total, "done": self.done, "interrupted": self.interrupted,
                "failed": [{"name": name, "reason": reason} for name, reason in self.failed]}
