"""The general stage's pure logic: step plan, learning-rate scaling, time budget, the ship rule, slicing."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from winnow.rerank.training.general_stage import (
    EVAL_SETS,
    SetComparison,
    TimeBudget,
    plan_training,
    scaled_learning_rate,
    ship_decision,
    slice_dataset,
)
from winnow.retrieval.corpus import Dataset, Passage


def test_learning_rate_scales_with_the_square_root_of_the_batch():
    assert scaled_learning_rate(16) == pytest.approx(5e-5)
    assert scaled_learning_rate(256) == pytest.approx(2e-4)
    assert scaled_learning_rate(64) == pytest.approx(1e-4)
    with pytest.raises(ValueError):
        scaled_learning_rate(0)


def test_plan_takes_the_epochs_when_they_fit_the_budget():
    plan = plan_training(400_000, batch_size=256, epochs=1.0, budget_seconds=300, pairs_per_second=2000)
    assert plan.steps == 1563  # ceil(400,000 / 256)
    assert plan.limited_by == "epochs"
    assert plan.estimated_seconds == pytest.approx(1563 * 256 / 2000, abs=0.1)
    assert plan.learning_rate == pytest.approx(2e-4)


def test_plan_is_cut_by_the_budget_and_max_steps_wins():
    plan = plan_training(400_000, batch_size=256, epochs=2.0, budget_seconds=100, pairs_per_second=2000)
    assert plan.limited_by == "budget"
    assert plan.steps == 781  # floor(100 s * 2000 pairs/s / 256)
    assert plan.epochs == pytest.approx(781 * 256 / 400_000, abs=1e-4)
    forced = plan_training(1000, batch_size=16, max_steps=3, learning_rate=1e-5)
    assert (forced.steps, forced.limited_by, forced.learning_rate) == (3, "max_steps", 1e-5)
    with pytest.raises(ValueError):
        plan_training(0)


def test_time_budget_stops_and_saves_once_spent(monkeypatch):
    clock = iter([100.0, 150.0, 401.0])
    monkeypatch.setattr("winnow.rerank.training.general_stage.time.monotonic", lambda: next(clock))
    budget = TimeBudget(300)
    state = SimpleNamespace(global_step=7, max_steps=10)
    control = SimpleNamespace(should_training_stop=False, should_save=False)
    budget.on_train_begin(None, state, control)
    budget.on_step_end(None, state, control)  # 50 s in
    assert not control.should_training_stop and budget.stopped_at_step is None
    budget.on_step_end(None, state, control)  # 301 s in
    assert control.should_training_stop and control.should_save and budget.stopped_at_step == 7
    with pytest.raises(ValueError):
        TimeBudget(0)


def _comparison(name: str, delta: float, p: float) -> SetComparison:
    return SetComparison(
        dataset=name,
        first_stage="bm25",
        queries=100,
        first_stage_ndcg=0.5,
        candidate_vs_shipped={"mean_difference": delta, "p_value": p},
    )


def test_ships_only_a_model_that_wins_on_average_and_loses_significantly_nowhere():
    names = [s.name for s in EVAL_SETS]
    wins = [_comparison(n, 0.01, 0.3) for n in names]
    assert ship_decision(wins).ship
    one_loss = [*wins[:-1], _comparison(names[-1], -0.005, 0.01)]  # mean still > 0
    decision = ship_decision(one_loss)
    assert not decision.ship and decision.significant_losses == [names[-1]]
    noisy_loss = [*wins[:-1], _comparison(names[-1], -0.03, 0.2)]  # a loss, not significant
    assert ship_decision(noisy_loss).ship
    flat = [_comparison(n, 0.0, 1.0) for n in names]
    assert not ship_decision(flat).ship  # a tie does not replace the shipped model
    missing = ship_decision(wins[:-1])
    assert not missing.ship and missing.missing == [names[-1]]
    assert not ship_decision(wins, complete=False).ship  # smoke runs never ship


def test_slice_keeps_judged_documents_and_the_first_others():
    corpus = [Passage(id=f"d{i}", text=f"text {i}") for i in range(10)]
    qrels = {"train": {"q1": {"d9": 1}, "q2": {"d8": 1}, "q3": {"d7": 1}}}
    data = Dataset("toy", corpus, {"q1": "a", "q2": "b", "q3": "c"}, qrels)
    cut = slice_dataset(data, "train", max_queries=2, max_docs=3)
    assert list(cut.queries) == ["q1", "q2"]
    assert [p.id for p in cut.corpus] == ["d8", "d9", "d0", "d1", "d2"]
    assert cut.qrels == {"train": {"q1": {"d9": 1}, "q2": {"d8": 1}}}
