"""The guard: combine a reranker with its first stage so that reranking does not make results worse.

Per query, reranker and first-stage scores are min-max normalised to [0, 1] and combined as
``weight * rerank + (1 - weight) * first_stage``: ``weight = 1`` is the pure reranker, ``0`` the first stage.
:func:`tune_weight` picks the weight on a dev split by nDCG@10 (ir-measures) over a grid; the chosen weight is
stored in the model's card (``winnow.json``) and used by winnow's ranker and search by default.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_GRID",
    "FORMULA",
    "check_weight",
    "interpolate",
    "interpolate_with_order",
    "interpolated_ranking",
    "minmax",
    "order_scores",
]

DEFAULT_GRID = tuple(round(0.1 * i, 1) for i in range(11))
FORMULA = "w * minmax(reranker) + (1 - w) * minmax(first stage), per query"  # as recorded in model cards

Ranked = list[tuple[str, float]]


def check_weight(weight: Any, name: str = "interpolation_weight") -> float | None:
    """``weight`` as a float in [0, 1], or None; anything else is an error that says so."""
    if weight is None:
        return None
    if isinstance(weight, bool) or not isinstance(weight, (int, float)):
        raise TypeError(f"{name} must be a number in [0, 1] or None, got {type(weight).__name__}")
    value = float(weight)
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"{name} must be in [0, 1] (1 = pure reranker, 0 = first stage), got {weight!r}")
    return value


def minmax(scores: Sequence[float] | np.ndarray) -> np.ndarray:
    """Scores scaled to [0, 1] (min -> 0, max -> 1); all-equal scores become 0.

    :raises ValueError: when a score is NaN.
    """
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    if values.size == 0:
        return values
    if np.isnan(values).any():
        raise ValueError("scores must not contain NaN")
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros_like(values)
    lo, hi = float(finite.min()), float(finite.max())
    clipped = np.clip(values, lo, hi)
    if hi - lo <= 0:
        return np.zeros_like(values)
    return (clipped - lo) / (hi - lo)


def interpolate(
    rerank_scores: Sequence[float] | np.ndarray,
    first_stage_scores: Sequence[float] | np.ndarray,
    weight: float,
) -> np.ndarray:
    """``weight * minmax(rerank) + (1 - weight) * minmax(first_stage)`` for one query's candidates."""
    weight = check_weight(weight, "weight")
    rr, fs = minmax(rerank_scores), minmax(first_stage_scores)
    if rr.shape != fs.shape:
        raise ValueError(f"{rr.size} rerank scores but {fs.size} first-stage scores")
    return weight * rr + (1.0 - weight) * fs


def order_scores(n: int) -> np.ndarray:
    """First-stage scores for ``n`` candidates known only by their order (best first): position ``i``
    (0-based) scores ``-i``. After :func:`minmax` the first scores 1, the last 0, and the others fall
    linearly in between: ``1 - i / (n - 1)``."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return -np.arange(n, dtype=np.float64)


def interpolate_with_order(rerank_scores: Sequence[float] | np.ndarray, weight: float) -> np.ndarray:
    """:func:`interpolate` with the order the candidates came in (best first) as the first stage, for callers
    that send a ranked list without its scores (a RAG client's retrieval order): candidate ``i`` of ``n``
    gets ``weight * minmax(rerank)[i] + (1 - weight) * (1 - i / (n - 1))`` (:func:`order_scores`), in [0, 1].
    ``weight = 1`` is the pure reranker, ``0`` the order sent."""
    values = np.asarray(rerank_scores, dtype=np.float64).reshape(-1)
    return interpolate(values, order_scores(values.size), weight)


def interpolated_ranking(first_stage: Ranked, rerank_scores: Mapping[str, float], weight: float) -> Ranked:
    """One query's first-stage list ``[(doc, score)]`` reordered by interpolated score (ties keep order)."""
    if not first_stage:
        return []
    docs = [doc for doc, _ in first_stage]
    combined = interpolate([rerank_scores[d] for d in docs], [s for _, s in first_stage], weight)
    order = np.argsort(-combined, kind="stable")
    return [(docs[i], float(combined[i])) for i in order]
