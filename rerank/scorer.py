"""What reranks: anything with ``score(query, documents)``, and the interpolation weight it comes with."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from winnow.rerank.interpolation import check_weight

__all__ = ["Scorer", "scorer_weight"]


class Scorer(Protocol):
    """Scores each document against the query (higher is more relevant); the engine is one."""

    def score(self, query: str, documents: Sequence[str]) -> np.ndarray: ...


def scorer_weight(scorer: Scorer | None, interpolation_weight: float | None = None) -> float | None:
    """The interpolation weight to use: ``interpolation_weight`` when given, else the one the scorer's model
    card records (``scorer.interpolation_weight``), else None (pure reranker)."""
    if interpolation_weight is not None:
        return check_weight(interpolation_weight)
    weight = getattr(scorer, "interpolation_weight", None)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)):
        return None  # a scorer without a card (or a test double)
    return check_weight(weight)
