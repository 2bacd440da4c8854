"""Exact nearest neighbours by cosine similarity (numpy): the vectors are L2-normalised, so the cosine is a
dot product; the top ``k`` are picked with ``argpartition`` and sorted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class Hit:
    path: str      # relative to outputs/
    score: float   # cosine similarity, -1..1

    def as_dict(self) -> dict[str, object]:
        return {"path": self.path, "score": round(self.score, 6)}


def normalised(vector: "np.ndarray") -> "np.ndarray":
    import numpy as np

    vector = np.asarray(vector, dtype=np.float32).reshape(-1)
    return vector / max(float(np.linalg.norm(vector)), 1e-12)


def top_k(vectors: "np.ndarray", query: "np.ndarray", k: int, *, normalise: bool = True
          ) -> tuple["np.ndarray", "np.ndarray"]:
    """(row indices, scores) of the ``k`` rows of ``vectors`` most similar to ``query``, best first (``normalise``
    False: the query is already scaled as it should be, e.g. a weighted label-space query)."""
    import numpy as np

    n = vectors.shape[0]
    if n == 0 or k <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    query = normalised(query) if normalise else np.asarray(query, dtype=np.float32).reshape(-1)
    if vectors.shape[1] != query.shape[0]:
        raise ValueError(f"the query has {query.shape[0]} dimensions, the index {vectors.shape[1]}")
    scores = vectors @ query
    k = min(k, n)
    picked = np.argpartition(-scores, k - 1)[:k] if k < n else np.arange(n)
    order = picked[np.lexsort((picked, -scores[picked]))]  # best first; ties by row (stable)
    return order, scores[order]


def search(paths: Sequence[str], vectors: "np.ndarray", query: "np.ndarray", k: int,
           exclude: str | None = None, *, normalise: bool = True) -> list[Hit]:
    """The ``k`` best images for ``query`` (``exclude``: an image left out, the one searched from)."""
    extra = 1 if exclude is not None else 0
    rows, scores = top_k(vectors, query, k + extra, normalise=normalise)
    hits = [Hit(paths[int(r)], float(s)) for r, s in zip(rows, scores) if paths[int(r)] != exclude]
    return hits[:k]
