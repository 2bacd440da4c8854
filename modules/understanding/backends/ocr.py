"""Offline text reading with RapidOCR (``rapidocr-onnxruntime``, which ships the PP-OCRv4 detection,
direction and recognition ONNX models inside its wheel): no download, CPU only.

:class:`OcrEngine` reads an image into :class:`OcrLine` boxes and groups them into rows (boxes whose
vertical centres are close are one row, read left to right), which is how receipts and forms are laid
out. :class:`OcrBackend` offers it through the one backend interface: its answer is the text read.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from modules.understanding.backends.base import (Answer, BackendError, BackendUnavailable, Message, StreamCallback,
                                                 Usage)

if TYPE_CHECKING:
    from PIL import Image

OCR_MODEL = "atelier-ocr"


@dataclass(frozen=True)
class OcrLine:
    """One text box: its text, confidence and bounds (x0, y0, x1, y1) in pixels."""

    text: str
    score: float
    box: tuple[float, float, float, float]

    @property
    def centre_y(self) -> float:
        return (self.box[1] + self.box[3]) / 2

    @property
    def height(self) -> float:
        return max(1.0, self.box[3] - self.box[1])


def group_rows(lines: Sequence[OcrLine]) -> list[list[OcrLine]]:
    """Boxes grouped into rows (top to bottom), each row left to right."""
    rows: list[list[OcrLine]] = []
    for line in sorted(lines, key=lambda item: item.centre_y):
        row = rows[-1] if rows else None
        if row is not None:
            centre = sum(item.centre_y for item in row) / len(row)
            height = sum(item.height for item in row) / len(row)
            if abs(line.centre_y - centre) <= 0.5 * min(height, line.height):
                row.append(line)
                continue
        rows.append([line])
    return [sorted(row, key=lambda item: item.box[0]) for row in rows]


def rows_text(lines: Sequence[OcrLine]) -> list[str]:
    return [" ".join(item.text for item in row) for row in group_rows(lines)]


class OcrEngine:
    """RapidOCR, created on first use and shared (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._engine: Any = None

    def _get(self) -> Any:
        if self._engine is None:
            try:
                from rapidocr_onnxruntime import RapidOCR
            except ImportError:
                raise BackendUnavailable("offline OCR needs the rapidocr-onnxruntime package "
                                         "(pip install rapidocr-onnxruntime)") from None
            self._engine = RapidOCR()
        return self._engine

    def read(self, image: "Image.Image") -> list[OcrLine]:
        import numpy as np

        array = np.asarray(image.convert("RGB"))[:, :, ::-1].copy()  # RapidOCR reads OpenCV's BGR
        with self._lock:
            result, _ = self._get()(array)
        lines = []
        for box, text, score in result or ():
            xs = [float(p[0]) for p in box]
            ys = [float(p[1]) for p in box]
            lines.append(OcrLine(text=str(text), score=float(score), box=(min(xs), min(ys), max(xs), max(ys))))
        return lines

    def text(self, image: "Image.Image") -> str:
        return "\n".join(rows_text(self.read(image)))


class OcrBackend:
    """:class:`~.base.VisionBackend` whose answer is the text of the conversation's last user images."""

    def __init__(self, engine: OcrEngine) -> None:
        self._engine = engine

    @property
    def name(self) -> str:
        return OCR_MODEL

    def chat(self, messages: Sequence[Message], images: Sequence["Image.Image"] = (), *, max_tokens: int = 256,
             temperature: float = 0.0, response_format: Mapping[str, Any] | None = None,
             on_text: StreamCallback | None = None) -> Answer:
        if response_format and response_format.get("type") != "text":
            raise BackendError(f"{OCR_MODEL} only reads text; for JSON use the extract task, which turns what it "
                               f"reads into fields")
        shown = next((m.images for m in reversed(messages) if m.role == "user" and m.images), ())
        if not shown:
            raise BackendError(f"{OCR_MODEL} needs an image to read")
        texts = []
        for index in shown:
            if not 0 <= index < len(images):
                raise BackendError(f"message refers to image {index + 1}, but the conversation has {len(images)}")
            texts.append(self._engine.text(images[index]))
        text = "\n\n".join(texts)
        if on_text is not None and text:
            on_text(text)
        return Answer(text=text, usage=Usage(0, 0), model=OCR_MODEL)
