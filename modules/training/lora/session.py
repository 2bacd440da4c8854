"""A training session's folder: what was asked, the state to resume from, and the loss log.

``<data dir>/training/lora/<name>/``: ``config.json`` (the request), ``state.pt`` (adapter weights,
optimizer, LR schedule and the step; written atomically every ``checkpoint_every`` steps and when the job
stops), ``loss.jsonl`` (one line per step). The trainer draws each step's batch, noise and timesteps from
a generator seeded by (seed, step), so resuming from ``state.pt`` continues exactly as if never stopped.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from modules.atomic_files import write_bytes_atomic
from modules.training.lora.errors import SessionError
from modules.training.lora.request import TrainLoraRequest

#: request fields that may change between runs of one session (the rest must match)
RESUMABLE_CHANGES = frozenset({"steps", "checkpoint_every", "overwrite", "sample_every", "sample_prompts",
                               "sample_steps", "export_format"})


@dataclass
class Session:
    folder: Path

    @classmethod
    def for_request(cls, data_dir: Path, req: TrainLoraRequest) -> "Session":
        return cls.in_folder(data_dir / "training" / "lora" / req.name, req)

    @classmethod
    def in_folder(cls, folder: Path, req: BaseModel) -> "Session":
        """The session in ``folder`` for ``req`` (any training kind), refused when made with other settings."""
        session = cls(folder)
        session.check(req)
        return session

    @property
    def config_file(self) -> Path:
        return self.folder / "config.json"

    @property
    def state_file(self) -> Path:
        return self.folder / "state.pt"

    @property
    def samples_dir(self) -> Path:
        return self.folder / "samples"

    @property
    def loss_file(self) -> Path:
        return self.folder / "loss.jsonl"

    def check(self, req: BaseModel) -> None:
        """Refuse to resume a session made with other settings (steps and checkpointing may change)."""
        if not self.config_file.is_file():
            return
        try:
            old = json.loads(self.config_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        new = req.model_dump(mode="json")
        fields = type(req).model_fields
        # a field added after the session was made counts as its default there
        changed = sorted(k for k in new if k not in RESUMABLE_CHANGES
                         and old.get(k, fields[k].get_default(call_default_factory=True) if k in fields else None) != new[k])
        if changed and self.state_file.is_file():
            raise SessionError(f"a training session named {self.folder.name!r} exists with other settings "
                               f"({', '.join(changed)}): resume it with the same settings, or pick another name")

    def start(self, req: BaseModel) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(self.config_file, json.dumps(req.model_dump(mode="json"), indent=2).encode())

    def save_state(self, state: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        partial = self.state_file.with_suffix(".partial")
        import torch

        torch.save(state, partial)
        os.replace(partial, self.state_file)
        write_bytes_atomic(self.folder / "step.json", json.dumps({"step": int(state["step"])}).encode())

    def saved_step(self) -> int | None:
        """The step of the saved state (without reading it), or None when there is none."""
        try:
            return int(json.loads((self.folder / "step.json").read_text(encoding="utf-8"))["step"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def load_state(self) -> dict[str, Any] | None:
        if not self.state_file.is_file():
            return None
        import torch

        return torch.load(self.state_file, map_location="cpu", weights_only=True)  # tensors and plain data only

    def log(self, record: dict[str, Any]) -> None:
        with self.loss_file.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def losses(self) -> list[dict[str, Any]]:
        if not self.loss_file.is_file():
            return []
        out = []
        for line in self.loss_file.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def truncate_log(self, step: int) -> None:
        """Drop log lines after ``step`` (steps redone after a resume are logged again, once)."""
        kept = [r for r in self.losses() if int(r.get("step", 0)) <= step]
        write_bytes_atomic(self.loss_file, "".join(json.dumps(r) + "\n" for r in kept).encode())
