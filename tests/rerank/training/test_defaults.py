"""Choosing a general reranker's defaults across sets so that no set loses."""

from __future__ import annotations

import pytest

from winnow.rerank.evaluation.runs import EvalRun
from winnow.rerank.training.defaults import _read_cached, _write_cached, choose_defaults


def _run(name: str, n: int, helps: bool) -> EvalRun:
    """``n`` queries, each with its relevant document second in the first stage's order ("b") and a decoy
    first ("a"). A helping reranker puts the relevant one on top; a hurting one ranks it last."""
    queries = {f"{name}{i}": "query" for i in range(n)}
    first = {q: [("a", 3.0), ("b", 2.0), ("c", 1.0)] for q in queries}
    scores = {"a": 0.0, "b": 1.0, "c": 0.5} if helps else {"a": 1.0, "b": -5.0, "c": 0.5}
    return EvalRun(
        dataset=name,
        split="dev",
        queries=queries,
        qrels={q: {"b": 1} for q in queries},
        depths=[3],
        first_stage=first,
        rerank_scores={q: dict(scores) for q in queries},
    )


def _vary(run: EvalRun) -> EvalRun:
    """Half the queries already have the relevant document first (so differences vary: a t-test has
    variance)."""
    for i, q in enumerate(run.queries):
        if i % 2:
            run.first_stage[q] = [("b", 3.0), ("a", 2.0), ("c", 1.0)]
    return run


def test_a_set_that_loses_significantly_rules_the_weight_out():
    helped, hurt = _vary(_run("helped", 30, True)), _vary(_run("hurt", 30, False))
    best, tried = choose_defaults({True: {"helped": helped, "hurt": hurt}}, depths=[3])
    assert len(tried) == 11
    assert best.admissible
    by_weight = {c.weight: c for c in tried}
    assert not by_weight[1.0].admissible  # the pure reranker sinks "hurt" on every varied query
    assert by_weight[1.0].per_set["hurt"]["significant_loss"]
    assert by_weight[1.0].per_set["helped"]["change"] > 0
    # every admissible choice leaves "hurt" without a significant loss; weight 0 always qualifies
    assert by_weight[0.0].admissible and by_weight[0.0].mean_change == 0
    assert best.per_set["hurt"]["change"] >= 0 or not best.per_set["hurt"]["significant_loss"]


def test_a_model_that_helps_nowhere_gets_weight_zero():
    best, _ = choose_defaults({True: {"hurt": _vary(_run("hurt", 20, False))}}, depths=[3])
    assert best.weight == 0.0 and best.mean_change == 0


def test_sets_weigh_the_same_whatever_their_size_and_ties_go_to_the_cheaper_reading():
    small_helped = _vary(_run("small", 10, True))
    runs = {True: {"small": small_helped}, False: {"small": _vary(_run("small", 10, True))}}
    best, _ = choose_defaults(runs, depths=[3])
    assert best.weight > 0 and best.windows is False  # same scores either way: truncation is cheaper
    with pytest.raises(ValueError, match="deeper"):
        choose_defaults(runs, depths=[5])


def test_scores_are_cached_and_read_back(tmp_path):
    run = _run("cached", 3, True)
    path = tmp_path / "run.json"
    _write_cached(path, run)
    again = _read_cached(path)
    assert again is not None
    assert again.first_stage == run.first_stage and again.rerank_scores == run.rerank_scores
    assert again.qrels == run.qrels and again.depths == run.depths
    assert _read_cached(tmp_path / "absent.json") is None


def _mixed(name: str, helped: int, hurt: int) -> EvalRun:
    """``helped`` queries whose relevant document the reranker lifts from second to first, and ``hurt``
    queries where it sinks it from first to second by the same amount: a gain within noise."""
    run = _run(name, helped + hurt, True)
    for i, q in enumerate(run.queries):
        if i >= helped:
            run.first_stage[q] = [("b", 3.0), ("a", 2.0), ("c", 1.0)]
            run.rerank_scores[q] = {"a": 1.0, "b": 0.0, "c": 0.5}  # the mirror image of a helped one
    return run


def test_a_gain_within_noise_gives_way_to_the_first_stage():
    best, tried = choose_defaults({True: {"mixed": _mixed("mixed", 11, 10)}}, depths=[3])
    reranking = max((c for c in tried if c.weight > 0 and c.admissible), key=lambda c: c.mean_change)
    assert reranking.mean_change > 0 and reranking.pooled_gain_p > 0.5  # the best reranking choice: noise
    assert best.weight == 0.0 and best.mean_change == 0


def test_a_measurable_gain_keeps_the_model_and_pooling_weighs_sets_the_same():
    helped = _vary(_run("helped", 10, True))
    best, _ = choose_defaults({True: {"helped": helped, "noise": _mixed("noise", 101, 100)}}, depths=[3])
    assert best.weight > 0 and best.pooled_gain_p < 0.05
    # pooled by query count instead, the 201 noisy queries would drown the 10 helped ones
    assert best.to_dict()["pooled_gain_p"] == round(best.pooled_gain_p, 6)
