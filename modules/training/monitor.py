"""Watching a training session: its loss curve as an image, and steps/s and ETA from its loss log.

The loss log (``loss.jsonl``: step, loss, lr, time) is the one source, so a session shows the same
whether its job is running, stopped or from an earlier start of the studio.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from PIL import Image, ImageDraw

PLOT_SIZE = (480, 240)


def read_log(folder: Path) -> list[dict[str, Any]]:
    path = folder / "loss.jsonl"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
            float(record["loss"])
            int(record["step"])
        except (ValueError, KeyError, TypeError):
            continue
        out.append(record)
    return out


@dataclass(frozen=True)
class Speed:
    step: int
    of: int
    steps_per_second: float | None
    eta_seconds: float | None

    def text(self) -> str:
        parts = [f"step {self.step}/{self.of}"]
        if self.steps_per_second:
            parts.append(f"{self.steps_per_second:.2f} steps/s")
        if self.eta_seconds is not None and self.step < self.of:
            seconds = int(round(self.eta_seconds))
            parts.append(f"ETA {seconds // 60}:{seconds % 60:02d}")
        return " · ".join(parts)


def speed(records: Sequence[dict[str, Any]], of: int, window: int = 20) -> Speed:
    """Steps/s over the last ``window`` logged steps of the latest run (a gap of a pause or a restart is cut)."""
    if not records:
        return Speed(0, of, None, None)
    step = int(records[-1]["step"])
    timed = [(int(r["step"]), float(r["time"])) for r in records[-window:] if isinstance(r.get("time"), (int, float))]
    rate = None
    if len(timed) >= 2:
        # only the contiguous tail (a resume logs the redone steps again with later times)
        tail = [timed[-1]]
        for item in reversed(timed[:-1]):
            if item[0] >= tail[-1][0] or tail[-1][1] - item[1] > 600:
                break
            tail.append(item)
        if len(tail) >= 2 and tail[0][1] > tail[-1][1]:
            rate = (tail[0][0] - tail[-1][0]) / (tail[0][1] - tail[-1][1])
    eta = (of - step) / rate if rate else None
    return Speed(step, of, rate, eta)


def loss_plot(records: Sequence[dict[str, Any]], size: tuple[int, int] = PLOT_SIZE) -> Image.Image:
    """The loss per step (and its running mean) drawn with PIL; an empty frame before the first step."""
    width, height = size
    image = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = 48, 12, width - 12, height - 24
    draw.rectangle((left, top, right, bottom), outline=(160, 160, 160))
    if not records:
        draw.text((left + 8, top + 8), "no steps yet", fill=(120, 120, 120))
        return image
    steps = [int(r["step"]) for r in records]
    losses = [float(r["loss"]) for r in records]
    low, high = min(losses), max(losses)
    if high - low < 1e-12:
        low, high = low - 0.5, high + 0.5
    first, last = min(steps), max(steps)
    span = max(1, last - first)

    def point(step: int, loss: float) -> tuple[float, float]:
        return (left + (step - first) / span * (right - left), bottom - (loss - low) / (high - low) * (bottom - top))

    raw = [point(s, v) for s, v in zip(steps, losses)]
    if len(raw) == 1:
        x, y = raw[0]
        draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=(234, 88, 12))
    else:
        draw.line(raw, fill=(251, 191, 150), width=1)
        mean, smooth, beta = 0.0, [], 0.9
        for index, value in enumerate(losses):
            mean = beta * mean + (1 - beta) * value
            smooth.append(point(steps[index], mean / (1 - beta ** (index + 1))))
        draw.line(smooth, fill=(234, 88, 12), width=2)
    draw.text((4, top), f"{high:.3g}", fill=(80, 80, 80))
    draw.text((4, bottom - 10), f"{low:.3g}", fill=(80, 80, 80))
    draw.text((left, bottom + 6), f"step {first}", fill=(80, 80, 80))
    label = f"step {last} · loss {losses[-1]:.4f}"
    draw.text((right - 7 * len(label), bottom + 6), label, fill=(80, 80, 80))
    return image
