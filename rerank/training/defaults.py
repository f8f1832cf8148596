"""Choosing a reranker's defaults across several sets at once, so that no set loses: the reading of long
documents (best window or truncation), the depth reranked and the interpolation weight, for a model that
ships to users whose domain it never saw (the general model).

Each set is scored once per reading at the deepest depth, on queries the model was not trained on and never a
test split (a dev split, or the training queries of a set the model never trained on). Every configuration
(reading x depth x weight) is then judged per set against the first stage's order on the same queries:

- it is *admissible* when no set's nDCG@10 falls with p < ``alpha`` (paired t over that set's queries);
- among admissible configurations the one with the best mean change over sets (each set weighs the same,
  whatever its number of queries) wins; ties go to the smaller weight, truncation, then the smaller depth
  (cheaper and closer to the first stage);
- reranking must also earn its cost: the winner keeps a weight above 0 only if its gain is measurable, i.e.
  the per-query changes of all sets pooled (each set's queries weighted by 1 / its query count, so each set
  weighs the same) have a positive mean with p < ``alpha`` (one-sample t). Otherwise a gain within noise
  (+0.0007 is not a reason to run a model on every query) gives way to weight 0 at the same reading and depth.

Weight 0 is always admissible (it *is* the first stage), so a model that helps nowhere gets weight 0: the
honest default is then the first stage's order, and winnow says so instead of reranking (see
:func:`winnow.rerank.card.reranking_disabled`). Scores are cached per set and reading under ``cache_dir`` so
an interrupted tuning resumes where it stopped.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from winnow.rerank.card import CARD_FILE, read_card, save_card
from winnow.rerank.engine import CrossEncoderEngine
from winnow.rerank.evaluation.runs import EvalRun, run_evaluation
from winnow.rerank.evaluation.statistics import paired_t_test
from winnow.rerank.interpolation import DEFAULT_GRID, FORMULA, interpolated_ranking
from winnow.rerank.training.tuning import ALPHA, per_query_ndcg
from winnow.retrieval.corpus import Dataset

logger = logging.getLogger(__name__)

__all__ = ["Choice", "TuningSet", "choose_defaults", "score_tuning_sets", "tune_defaults"]

RULE = (
    "admissible: no set's nDCG@10 falls with p < {alpha} (paired t) against the first stage; best mean "
    "change over sets (each set weighs the same); ties: smaller weight, truncation, smaller depth; a weight "
    "above 0 only if its pooled per-query gain is positive with p < {alpha}, else weight 0"
)


@dataclass
class TuningSet:
    """One set to tune on: a BEIR dataset, the split (never test), its first stage and its index."""

    dataset: Dataset
    split: str
    first_stage: str = "hybrid"
    index: str | Path | None = None

    @property
    def name(self) -> str:
        return f"{self.dataset.name}/{self.split}"


@dataclass
class Choice:
    """One configuration and how it fared on each set."""

    windows: bool
    depth: int
    weight: float
    per_set: dict[str, dict[str, Any]]
    diffs: dict[str, list[float]] = field(default_factory=dict, repr=False)  # per set: per-query changes

    @property
    def pooled_gain_p(self) -> float:
        """Two-sided p of the pooled per-query changes (each set weighs the same); 1.0 when all are zero."""
        return pooled_gain_p_value(list(self.diffs.values()))

    @property
    def mean_change(self) -> float:
        return float(np.mean([row["change"] for row in self.per_set.values()]))

    @property
    def admissible(self) -> bool:
        return not any(row["significant_loss"] for row in self.per_set.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "windows": self.windows,
            "depth": self.depth,
            "weight": self.weight,
            "mean_change": round(self.mean_change, 6),
            "admissible": self.admissible,
            "pooled_gain_p": None if math.isnan(p := self.pooled_gain_p) else round(p, 6),
            "per_set": self.per_set,
        }


def pooled_gain_p_value(diffs_per_set: Sequence[Sequence[float]]) -> float:
    """Two-sided p-value that the mean of per-query changes pooled over sets is 0, each set weighing the same
    (a query's change is scaled by (total queries / sets) / the set's query count, then a one-sample t over
    all of them). 1.0 when every change is 0; NaN with fewer than two queries."""
    sets = [np.asarray(d, dtype=float) for d in diffs_per_set if len(d)]
    if not sets:
        return math.nan
    total = sum(len(d) for d in sets)
    pooled = np.concatenate([d * (total / len(sets)) / len(d) for d in sets])
    return paired_t_test(np.zeros_like(pooled), pooled)


def score_tuning_sets(
    model: str | Path,
    sets: Sequence[TuningSet],
    *,
    depth: int = 20,
    max_queries: int | None = None,
    readings: Sequence[bool] = (True, False),
    device: str | None = None,
    cache_dir: str | Path | None = None,
    show_progress: bool = False,
) -> dict[bool, dict[str, EvalRun]]:
    """Each set's first-stage top ``depth`` scored by ``model`` reading long documents by their best window
    (True) and truncated (False): ``{windows: {set name: run}}``. Runs already in ``cache_dir`` are reused."""
    out: dict[bool, dict[str, EvalRun]] = {}
    for windows in readings:
        engine: CrossEncoderEngine | None = None
        out[windows] = {}
        for tuning_set in sets:
            if tuning_set.split == "test":
                raise ValueError(f"{tuning_set.name}: never tune on a test split")
            path = _cache_path(cache_dir, tuning_set, windows, depth, max_queries)
            run = _read_cached(path)
            if run is None:
                engine = engine or CrossEncoderEngine(str(model), device=device, windows=windows).load()
                logger.info("scoring %s (windows=%s, depth %d)", tuning_set.name, windows, depth)
                run = run_evaluation(
                    tuning_set.dataset,
                    tuning_set.split,
                    first_stage=tuning_set.first_stage,
                    index=tuning_set.index,
                    reranker=engine,
                    depths=[depth],
                    max_queries=max_queries,
                    interpolation_weight=1.0,
                    show_progress=show_progress,
                )
                _write_cached(path, run)
            out[windows][tuning_set.name] = run
    return out


def choose_defaults(
    runs: dict[bool, dict[str, EvalRun]],
    *,
    depths: Sequence[int] = (10, 20),
    grid: Sequence[float] = DEFAULT_GRID,
    alpha: float = ALPHA,
) -> tuple[Choice, list[Choice]]:
    """The chosen configuration and every one tried (see the module docstring for the rule)."""
    grid = sorted(set(grid) | {0.0})  # weight 0 (the first stage) is always a choice
    tried: list[Choice] = []
    for windows, by_set in runs.items():
        for depth in depths:
            if any(depth > run.max_depth for run in by_set.values()):
                raise ValueError(f"depth {depth} is deeper than the scored candidates")
            per_weight: dict[float, dict[str, dict[str, Any]]] = {w: {} for w in grid}
            diffs: dict[float, dict[str, list[float]]] = {w: {} for w in grid}
            for name, run in by_set.items():
                baseline, curves = _curves(run, depth, grid)
                for w, values in curves.items():
                    diffs[w][name] = [float(v - b) for v, b in zip(values, baseline, strict=True)]
                    change = float(np.mean(values) - np.mean(baseline))
                    p_value = paired_t_test(baseline, values)
                    per_weight[w][name] = {
                        "queries": len(values),
                        "first_stage": round(float(np.mean(baseline)), 6),
                        "ndcg": round(float(np.mean(values)), 6),
                        "change": round(change, 6),
                        "p_value": None if math.isnan(p_value) else round(p_value, 6),
                        "significant_loss": bool(change < 0 and not math.isnan(p_value) and p_value < alpha),
                    }
            tried.extend(Choice(windows, depth, w, rows, diffs[w]) for w, rows in per_weight.items())
    admissible = [c for c in tried if c.admissible]
    best = max(admissible, key=lambda c: (round(c.mean_change, 9), -c.weight, not c.windows, -c.depth))
    if best.weight > 0 and not (best.mean_change > 0 and best.pooled_gain_p < alpha):
        logger.info(
            "best admissible: windows=%s, depth %d, weight %.1f, mean change %+.4f (pooled p %.3g): not a "
            "measurable gain, so weight 0",
            best.windows,
            best.depth,
            best.weight,
            best.mean_change,
            best.pooled_gain_p,
        )
        best = next(c for c in tried if (c.windows, c.depth, c.weight) == (best.windows, best.depth, 0.0))
    return best, tried


def _curves(run: EvalRun, depth: int, grid: Sequence[float]) -> tuple[list[float], dict[float, list[float]]]:
    """Per-query nDCG@10 of the first stage and of each interpolation weight at ``depth``."""
    qids = list(run.queries)
    first = run.first_stage_lists(depth)
    assert run.rerank_scores is not None
    baseline = per_query_ndcg(run.qrels, first, qids)
    curves = {
        w: per_query_ndcg(
            run.qrels,
            {q: interpolated_ranking(first[q], run.rerank_scores.get(q, {}), w) for q in qids},
            qids,
        )
        for w in grid
    }
    return baseline, curves


def tune_defaults(
    model: str | Path,
    sets: Sequence[TuningSet],
    *,
    depths: Sequence[int] = (10, 20),
    max_queries: int | None = None,
    device: str | None = None,
    cache_dir: str | Path | None = None,
    show_progress: bool = False,
    write: bool = True,
) -> dict[str, Any]:
    """Score ``sets``, choose the defaults and (``write``) record them in the model's card. Returns the card's
    new ``defaults`` section."""
    card = read_card(model)
    if card is None:
        raise ValueError(f"{model} has no {CARD_FILE} model card")
    trained_on = {
        source.get("dataset") or source.get("name") for source in card.get("data", {}).get("sources", [])
    }
    for tuning_set in sets:
        if tuning_set.dataset.name in trained_on:
            raise ValueError(f"{model} was trained on {tuning_set.dataset.name}: tune it with `winnow tune`")
    runs = score_tuning_sets(
        model,
        sets,
        depth=max(depths),
        max_queries=max_queries,
        device=device,
        cache_dir=cache_dir,
        show_progress=show_progress,
    )
    best, tried = choose_defaults(runs, depths=depths)
    section = {
        "windows": best.windows,
        "depth": best.depth,
        "weight": best.weight,
        "mean_change": round(best.mean_change, 6),
        "per_set": best.per_set,
        "best_reranking": _best_reranking(tried),
        "sets": [f"{s.name} ({s.first_stage})" for s in sets],
        "max_queries": max_queries,
        "rule": RULE.format(alpha=ALPHA),
        "formula": FORMULA,
        "tried": [c.to_dict() for c in tried],
    }
    logger.info(
        "chose windows=%s, depth %d, weight %.1f: mean nDCG@10 change %+.4f over %d sets",
        best.windows,
        best.depth,
        best.weight,
        best.mean_change,
        len(sets),
    )
    if write:
        previous = card.get("interpolation")
        card["interpolation"] = {
            "weight": best.weight,
            "source": "chosen across sets the model never trained on, never a test split: " + section["rule"],
            "split": ", ".join(s.name for s in sets),
            "formula": FORMULA,
            "previous": previous,
        }
        card["windows"] = best.windows
        card["depth"] = best.depth
        card["defaults"] = section
        save_card(model, card)
    return section


def _best_reranking(tried: Sequence[Choice]) -> dict[str, Any] | None:
    """The best admissible configuration that runs the model (weight > 0), with its pooled p: what the
    gain gate weighed when it chose weight 0."""
    reranking = [c for c in tried if c.admissible and c.weight > 0]
    if not reranking:
        return None
    best = max(reranking, key=lambda c: (round(c.mean_change, 9), -c.weight, not c.windows, -c.depth))
    return best.to_dict()


def _cache_path(
    cache_dir: str | Path | None, tuning_set: TuningSet, windows: bool, depth: int, max_queries: int | None
) -> Path | None:
    if cache_dir is None:
        return None
    reading = "windows" if windows else "truncated"
    name = f"{tuning_set.dataset.name}_{tuning_set.split}_{tuning_set.first_stage}_{reading}_d{depth}"
    return Path(cache_dir) / f"{name}_q{max_queries or 'all'}.json"


def _read_cached(path: Path | None) -> EvalRun | None:
    if path is None or not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    data["first_stage"] = {q: [(d, s) for d, s in ranked] for q, ranked in data["first_stage"].items()}
    return EvalRun(**data)


def _write_cached(path: Path | None, run: EvalRun) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = ("dataset", "split", "queries", "qrels", "depths", "first_stage", "rerank_scores")
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({k: getattr(run, k) for k in fields}), encoding="utf-8")
    tmp.replace(path)
