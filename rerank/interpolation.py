"""The guard: combine a reranker with its first stage so that reranking does not make results worse.

Per query, reranker and first-stage scores are min-max normalised to [0, 1] and combined as
``weight * rerank + (1 - weight) * first_stage``: ``weight = 1`` is the pure reranker, ``0`` the first stage.
:func:`tune_weight` picks the weight on a dev split by nDCG@10 (ir-measures) over a grid; the chosen weight is
stored in the model's card (``winnow.json``) and used by winnow's ranker and search by default.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ir_measures
import numpy as np

from rerank.models import CARD_FILE

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_GRID",
    "FORMULA",
    "WeightTuning",
    "check_weight",
    "interpolate",
    "interpolated_ranking",
    "minmax",
    "record_weight",
    "tune_weight",
]

DEFAULT_GRID = tuple(round(0.1 * i, 1) for i in range(11))
FORMULA = "w * minmax(reranker) + (1 - w) * minmax(first stage), per query"  # as recorded in model cards
_MEASURE = ir_measures.nDCG @ 10

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


def interpolated_ranking(first_stage: Ranked, rerank_scores: Mapping[str, float], weight: float) -> Ranked:
    """One query's first-stage list ``[(doc, score)]`` reordered by interpolated score (ties keep order)."""
    if not first_stage:
        return []
    docs = [doc for doc, _ in first_stage]
    combined = interpolate([rerank_scores[d] for d in docs], [s for _, s in first_stage], weight)
    order = np.argsort(-combined, kind="stable")
    return [(docs[i], float(combined[i])) for i in order]


@dataclass
class WeightTuning:
    """The weight :func:`tune_weight` chose and the nDCG@10 of every weight of the grid."""

    weight: float
    scores: dict[float, float]
    queries: int
    measure: str = str(_MEASURE)
    info: dict[str, Any] = field(default_factory=dict)
    per_query: list[float] = field(default_factory=list, repr=False)  # nDCG@10 at ``weight``, query order

    @property
    def best(self) -> float:
        return self.scores[self.weight]

    def to_dict(self) -> dict[str, Any]:
        return {
            "weight": self.weight,
            "measure": self.measure,
            "queries": self.queries,
            "grid": {f"{w:.2f}": round(s, 6) for w, s in sorted(self.scores.items())},
            "ndcg_pure_reranker": round(self.scores[1.0], 6) if 1.0 in self.scores else None,
            "ndcg_first_stage": round(self.scores[0.0], 6) if 0.0 in self.scores else None,
            "ndcg_interpolated": round(self.best, 6),
            **self.info,
        }


def tune_weight(
    runs: Sequence[Any] | Any, *, grid: Sequence[float] = DEFAULT_GRID, depth: int | None = None
) -> WeightTuning:
    """Pick the interpolation weight with the best mean nDCG@10 over the queries of ``runs``.

    :param runs: one or more :class:`rerank.evaluation.EvalRun` with rerank scores (e.g. a dev split of each
        training dataset); all their queries are pooled.
    :param grid: weights tried (default 0, 0.1, ..., 1). Ties go to the larger weight.
    :param depth: candidates reordered per query (default each run's deepest).
    """
    runs = list(runs) if isinstance(runs, (list, tuple)) else [runs]
    if not runs:
        raise ValueError("tune_weight needs at least one evaluation run")
    weights = sorted({check_weight(w, "grid weight") for w in grid})
    if not weights:
        raise ValueError("the weight grid is empty")
    per_weight: dict[float, list[float]] = {w: [] for w in weights}
    n_queries = 0
    for r, run in enumerate(runs):
        if not run.reranked:
            raise ValueError(f"run {r} ({run.dataset}/{run.split}) has no rerank scores to interpolate")
        qids = list(run.queries)
        n_queries += len(qids)
        first = run.first_stage_lists(depth)
        qrels = {q: {d: int(g) for d, g in run.qrels.get(q, {}).items()} for q in qids}
        for w in weights:
            lists = {q: interpolated_ranking(first[q], run.rerank_scores.get(q, {}), w) for q in qids}
            per_weight[w].extend(_per_query_ndcg(qrels, lists, qids))
    scores = {w: float(np.mean(v)) if v else 0.0 for w, v in per_weight.items()}
    best = max(weights, key=lambda w: (round(scores[w], 12), w))
    logger.info(
        "interpolation weight %.2f: nDCG@10 %.4f (pure reranker %.4f, first stage %.4f) over %d queries",
        best,
        scores[best],
        scores.get(1.0, float("nan")),
        scores.get(0.0, float("nan")),
        n_queries,
    )
    return WeightTuning(weight=best, scores=scores, queries=n_queries, per_query=per_weight[best])


def _per_query_ndcg(
    qrels: dict[str, dict[str, int]], lists: Mapping[str, Ranked], qids: list[str]
) -> list[float]:
    from rerank.evaluation import as_run

    values = dict.fromkeys(qids, 0.0)
    run = {q: r for q, r in as_run({q: lists[q] for q in qids}).items() if r}
    if run:
        for row in ir_measures.iter_calc([_MEASURE], qrels, run):
            if row.query_id in values:
                values[row.query_id] = float(row.value)
    return [values[q] for q in qids]


def record_weight(model_dir: str | Path, tuning: WeightTuning) -> dict[str, Any]:
    """Store ``tuning`` as ``interpolation`` in ``model_dir``'s ``winnow.json`` (created when absent)."""
    path = Path(model_dir) / CARD_FILE
    card: dict[str, Any] = {}
    if path.is_file():
        card = json.loads(path.read_text(encoding="utf-8"))
    card["interpolation"] = tuning.to_dict()
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return card
