"""Text streams of running understanding jobs: the job appends each piece of its answer, a reader (the
OpenAI-compatible route streaming to its client) follows it from an offset. Held by the studio's
:class:`~modules.understanding.services.UnderstandingServices`; bounded (the oldest finished streams go)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field


@dataclass
class _Stream:
    pieces: list[str] = field(default_factory=list)
    done: bool = False


class TextStreams:
    def __init__(self, keep: int = 64) -> None:
        self._keep = keep
        self._cond = threading.Condition()
        self._streams: "OrderedDict[str, _Stream]" = OrderedDict()

    def _get(self, job_id: str) -> _Stream:
        stream = self._streams.get(job_id)
        if stream is None:
            stream = self._streams[job_id] = _Stream()
            while len(self._streams) > self._keep:
                oldest = next((k for k, s in self._streams.items() if s.done), next(iter(self._streams)))
                del self._streams[oldest]
        return stream

    def append(self, job_id: str, text: str) -> None:
        with self._cond:
            self._get(job_id).pieces.append(text)
            self._cond.notify_all()

    def finish(self, job_id: str) -> None:
        with self._cond:
            self._get(job_id).done = True
            self._cond.notify_all()

    def read(self, job_id: str, offset: int, timeout: float = 1.0) -> tuple[list[str], bool]:
        """The pieces from ``offset`` on (waiting up to ``timeout`` for one) and whether the stream is done."""
        with self._cond:
            stream = self._get(job_id)
            if len(stream.pieces) <= offset and not stream.done:
                self._cond.wait(timeout)
            return stream.pieces[offset:], stream.done

    def discard(self, job_id: str) -> None:
        with self._cond:
            self._streams.pop(job_id, None)
