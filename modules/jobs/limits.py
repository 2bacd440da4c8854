"""Server limits on what one job may ask for and how much may wait in the queue.

Checked at submit time, for every door (UI, A1111 API, native API), so a request that is too
big is refused at once with a message that names the limit and the flag that sets it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modules.jobs.model import LimitExceededError, QueueFullError


@dataclass(frozen=True)
class QueueLimits:
    max_waiting: int = 256            # --max-queue
    max_waiting_per_owner: int = 64   # --max-queue-per-user
    max_pixels: int = 2048 * 2048     # --max-pixels: width x height of one image
    max_images: int = 64              # --max-images: batch_size x n_iter of one job

    def check_request(self, request: Any) -> None:
        """Raise LimitExceededError when one job asks for more than allowed."""
        width, height = getattr(request, "width", None), getattr(request, "height", None)
        if isinstance(width, int) and isinstance(height, int) and width * height > self.max_pixels:
            raise LimitExceededError(
                f"{width}x{height} is {width * height} pixels, over this server's limit of "
                f"{self.max_pixels} pixels per image (--max-pixels)")
        hires = _hires_size(request, width, height)
        if hires is not None and hires[0] * hires[1] > self.max_pixels:
            raise LimitExceededError(
                f"the hires fix would make {hires[0]}x{hires[1]} images ({hires[0] * hires[1]} pixels), over this "
                f"server's limit of {self.max_pixels} pixels per image (--max-pixels)")
        batch_size, n_iter = getattr(request, "batch_size", None), getattr(request, "n_iter", None)
        if isinstance(batch_size, int) and isinstance(n_iter, int) and batch_size * n_iter > self.max_images:
            raise LimitExceededError(
                f"batch size {batch_size} x batch count {n_iter} = {batch_size * n_iter} images, over this "
                f"server's limit of {self.max_images} images per job (--max-images)")

    def check_room(self, waiting: int, waiting_for_owner: int, owner: str | None) -> None:
        """Raise QueueFullError when the queue, or this owner's share of it, is full."""
        if waiting >= self.max_waiting:
            raise QueueFullError(f"the queue is full ({self.max_waiting} jobs waiting); try again later")
        if waiting_for_owner >= self.max_waiting_per_owner:
            who = f" for {owner}" if owner else ""
            raise QueueFullError(f"too many jobs waiting{who} ({self.max_waiting_per_owner}, "
                                 "--max-queue-per-user); wait for some to finish")


def _hires_size(request: Any, width: Any, height: Any) -> tuple[int, int] | None:
    """The hires-fix target size of a txt2img request (A1111's rules), or None without hires."""
    if not getattr(request, "enable_hr", False) or not isinstance(width, int) or not isinstance(height, int):
        return None
    rx, ry = int(getattr(request, "hr_resize_x", 0) or 0), int(getattr(request, "hr_resize_y", 0) or 0)
    if rx and ry:
        return rx, ry
    if rx:
        return rx, rx * height // width
    if ry:
        return ry * width // height, ry
    scale = float(getattr(request, "hr_scale", 1.0) or 1.0)
    return int(width * scale), int(height * scale)
