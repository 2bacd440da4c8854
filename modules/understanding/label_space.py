"""Embeddings in the label space of a *grouped* classifier (labels ``group=value``, such as the shapes classifier's
shape, colour, background, position and size), and the weights a search gives each group.

The vector of an image is, per group, the square roots of its softmax probabilities within that group, the
groups concatenated and divided by ``sqrt(number of groups)``: each group's part has length ``1/sqrt(G)``, the
whole vector length 1, and the dot product of two vectors is the mean over groups of the Bhattacharyya
coefficient of their label distributions (1: the same answer with the same confidence; 0: nothing in common).

A search can weigh the groups: ``score = sum_g w_g * BC_g / sum_g w_g``. Only the query needs the weights (the
stored vectors stay as they are), so one index serves every weighting. A classifier may declare its default
weights in its ``config.json`` as ``atelier_search_weights`` (the shapes classifier: the subject, shape and
colour, counts four times as much as the scene); a request's weights override them group by group.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:
    import numpy as np


class GroupWeightsError(ValueError):
    """Search weights that cannot be used with this model (the message says why)."""


def label_space_vectors(scores: "np.ndarray", groups: Mapping[str, list[int]]) -> "np.ndarray":
    """``(n, labels)`` within-group probabilities → ``(n, labels)`` unit vectors (see the module docstring)."""
    import numpy as np

    vectors = np.sqrt(np.clip(np.asarray(scores, dtype=np.float64), 0.0, None))
    for idx in groups.values():   # each group's part to length 1 (probabilities sum to 1 up to rounding)
        part = vectors[:, idx]
        vectors[:, idx] = part / np.maximum(np.linalg.norm(part, axis=1, keepdims=True), 1e-12)
    return (vectors / np.sqrt(max(1, len(groups)))).astype(np.float32)


def resolve_weights(groups: Mapping[str, list[int]] | None, model: str, declared: Mapping[str, float],
                    asked: Mapping[str, float] | None) -> dict[str, float] | None:
    """Every group's weight (declared defaults, then the request's), or None for a model without groups.

    Raises GroupWeightsError when weights are asked of a model without groups, name an unknown group, or leave
    no group with a positive weight."""
    if not groups:
        if asked:
            raise GroupWeightsError(f"{model} has no label groups (labels written group=value), so its matches "
                                    "cannot be weighed by group: leave weights empty")
        return None
    unknown = sorted(set(asked or {}) - set(groups))
    if unknown:
        raise GroupWeightsError(f"{model} has no label group {', '.join(map(repr, unknown))} "
                                f"(its groups: {', '.join(groups)})")
    weights = {group: float(declared.get(group, 1.0)) for group in groups}
    weights.update({group: float(value) for group, value in (asked or {}).items()})
    if any(value < 0 for value in weights.values()) or sum(weights.values()) <= 0:
        raise GroupWeightsError("group weights must be 0 or more, with at least one above 0")
    return weights


def weighted_query(query: "np.ndarray", groups: Mapping[str, list[int]], weights: Mapping[str, float]) -> "np.ndarray":
    """The query vector with each group's part scaled so that its dot product with a stored vector is the
    weighted mean of the groups' Bhattacharyya coefficients."""
    import numpy as np

    scale = np.ones(query.shape[-1], dtype=np.float32)
    total = sum(weights.values())
    for group, idx in groups.items():
        scale[idx] = weights[group] * len(groups) / total
    return (np.asarray(query, dtype=np.float32) * scale).astype(np.float32)


def parse_weights(text: str) -> dict[str, float]:
    """``"background=0.25, position=0"`` → ``{"background": 0.25, "position": 0.0}`` (the Search tab's field)."""
    weights: dict[str, float] = {}
    for part in (text or "").replace(";", ",").split(","):
        if not part.strip():
            continue
        group, sep, value = part.partition("=")
        try:
            if not sep or not group.strip():
                raise ValueError
            weights[group.strip()] = float(value)
        except ValueError:
            raise GroupWeightsError(f"cannot read {part.strip()!r}: write group=weight, e.g. background=0.25") from None
    return weights


def format_weights(weights: Mapping[str, float]) -> str:
    return ", ".join(f"{group}={value:g}" for group, value in weights.items())
