"""Choosing the interpolation weight, and windows or truncation, on tuning queries."""

from __future__ import annotations

import numpy as np
import pytest

from tests.rerank.helpers import constructed_run
from winnow.rerank.evaluation.runs import EvalRun
from winnow.rerank.training.tuning import WeightTuning, choose_windows, tune_weight


def test_tuning_picks_a_weight_better_than_both_ends():
    tuning = tune_weight(constructed_run())
    assert len(tuning.scores) == 11 and tuning.queries == 2
    assert 0.0 < tuning.weight < 1.0
    assert tuning.best == pytest.approx(1.0)
    assert tuning.best > tuning.scores[0.0] and tuning.best > tuning.scores[1.0]
    assert tuning.scores[0.0] < 1.0 and tuning.scores[1.0] < 1.0
    data = tuning.to_dict()
    assert data["weight"] == tuning.weight and data["ndcg_interpolated"] == pytest.approx(1.0)
    assert set(data["grid"]) == {f"{w / 10:.2f}" for w in range(11)}
    # per-query figures at the chosen weight, in query order, so two tunings can be compared paired
    assert tuning.per_query == pytest.approx([1.0, 1.0]) and "per_query" not in data
    pure = tune_weight(constructed_run(), grid=[1.0])
    assert pure.per_query[0] < 1.0 and pure.per_query[1] == pytest.approx(1.0)
    assert np.mean(pure.per_query) == pytest.approx(pure.best)


def test_tuning_keeps_the_pure_reranker_when_it_is_best():
    run = constructed_run()
    run.rerank_scores = {"q1": {"a": 1.0, "b": 0.0, "c": 0.5}, "q2": {"d": 0.0, "e": 1.0, "f": 0.5}}
    assert tune_weight(run).weight == 1.0
    with pytest.raises(ValueError, match="no rerank scores"):
        tune_weight(EvalRun("x", "dev", {"q": "t"}, {"q": {}}, [10], {"q": []}))


def _tuning(per_query: list[float]) -> WeightTuning:
    mean = sum(per_query) / len(per_query)
    return WeightTuning(weight=0.5, scores={0.5: mean}, queries=len(per_query), per_query=per_query)


def test_windows_stay_unless_truncation_wins_significantly():
    windows = _tuning([0.50, 0.60, 0.55, 0.40, 0.70, 0.65, 0.45, 0.52])
    slightly_better = _tuning([0.52, 0.59, 0.58, 0.41, 0.69, 0.68, 0.44, 0.55])
    keep, comparison = choose_windows(windows, slightly_better)
    assert keep is True and comparison["difference"] > 0 and comparison["p_value"] >= 0.05
    much_better = _tuning([v + 0.2 + 0.01 * i for i, v in enumerate(windows.per_query)])
    keep, comparison = choose_windows(windows, much_better)
    assert keep is False and comparison["p_value"] < 0.05
    keep, _ = choose_windows(much_better, windows)  # truncation worse: windows whatever p says
    assert keep is True
