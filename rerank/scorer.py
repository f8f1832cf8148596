"""What reranks: anything with ``score(query, documents)``, and the interpolation weight it comes with."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from winnow.rerank.card import card_depth, card_interpolation_weight, first_stage_only_reason
from winnow.rerank.interpolation import check_weight

__all__ = ["Scorer", "scorer_depth", "scorer_keeps_first_stage", "scorer_weight"]


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


def _model_of(scorer: Scorer | None) -> Any:
    """The object holding the model card: the scorer, or the scorer a micro-batcher wraps (``.scorer``)."""
    return getattr(scorer, "scorer", scorer)


def scorer_depth(scorer: Scorer | None, default: int) -> int:
    """How many first-stage candidates to rerank: the scorer's model card's ``depth``, else ``default``."""
    depth = card_depth(getattr(_model_of(scorer), "card", None))
    return default if depth is None else depth


def scorer_keeps_first_stage(scorer: Scorer | None, interpolation_weight: float | None = None) -> str | None:
    """Why reranking with ``scorer`` would keep the first stage's order (the weight in use is 0), or None.

    With weight 0 the interpolated order *is* the first stage's, so callers skip the model and say why: the
    card's explanation (:func:`winnow.rerank.card.first_stage_only_reason`) or, for a weight passed in, that.
    """
    if scorer is None or scorer_weight(scorer, interpolation_weight) != 0.0:
        return None
    model = _model_of(scorer)
    card = getattr(model, "card", None)
    if card_interpolation_weight(card) != 0.0:
        return "interpolation weight 0 keeps the first stage's order: the reranker is not run"
    name = str(getattr(model, "model_name", None) or "the reranker")
    if Path(name).is_dir():
        name = Path(name).name  # a folder's name, never its path
    return first_stage_only_reason(card, name)
