"""TensorBoard logs of a training session: loss and learning rate per step, and the sample images.

Written with :class:`torch.utils.tensorboard.SummaryWriter` into ``<session>/tensorboard/`` (``tensorboard
--logdir <data dir>/training`` shows every session), beside the session's own loss log and plot, which stay
the studio's source. A resumed run opens the folder again with ``purge_step`` at the step it resumes from,
so TensorBoard drops what the interrupted run logged after that step. When the ``tensorboard`` package is
missing, logging is skipped with one warning (training does not depend on it).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

log = logging.getLogger(__name__)


class TensorBoardLog:
    """One writer for one run of a session (closed at the end of the run)."""

    def __init__(self, folder: Path, start_step: int = 0) -> None:
        self.folder = folder
        self._writer: Any = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:  # the package is in requirements.txt; a trimmed environment may lack it
            log.warning("TensorBoard logs are not written (%s): install the tensorboard package", exc)
            return
        folder.mkdir(parents=True, exist_ok=True)
        self._writer = SummaryWriter(log_dir=str(folder), purge_step=start_step if start_step > 0 else None)

    @property
    def active(self) -> bool:
        return self._writer is not None

    def scalars(self, step: int, **values: float) -> None:
        if self._writer is None:
            return
        for name, value in values.items():
            self._writer.add_scalar(f"train/{name}", float(value), step)

    def images(self, step: int, paths: Sequence[Path]) -> None:
        """The sample images of ``step`` (PNG files), as ``samples/<index>``."""
        if self._writer is None or not paths:
            return
        import numpy as np
        from PIL import Image

        for index, path in enumerate(paths):
            with Image.open(path) as image:
                array = np.asarray(image.convert("RGB"))
            self._writer.add_image(f"samples/{index}", array, step, dataformats="HWC")
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None
