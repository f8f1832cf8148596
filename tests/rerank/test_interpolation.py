"""The guard: normalisation, interpolation, weight tuning, the card, and its use by search, ranker, report."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from haystack import Document

from tests.rerank.helpers import constructed_run
from winnow.rerank.engine import CrossEncoderEngine
from winnow.rerank.evaluation.report import build_report
from winnow.rerank.interpolation import (
    check_weight,
    interpolate,
    interpolate_with_order,
    interpolated_ranking,
    minmax,
    order_scores,
)
from winnow.rerank.ranker import WinnowRanker
from winnow.rerank.search import TwoStageSearch, rerank_hits
from winnow.retrieval.hit import Hit


def test_minmax_per_query():
    np.testing.assert_allclose(minmax([1.0, 3.0, 2.0]), [0.0, 1.0, 0.5])
    np.testing.assert_allclose(minmax([-5.0, -1.0]), [0.0, 1.0])
    np.testing.assert_allclose(minmax([2.0, 2.0, 2.0]), [0.0, 0.0, 0.0])
    assert minmax([]).size == 0
    with pytest.raises(ValueError, match="NaN"):
        minmax([1.0, float("nan")])


def test_interpolate_ends_and_middle():
    rr, fs = [10.0, 0.0, 5.0], [0.2, 0.4, 0.3]
    np.testing.assert_allclose(interpolate(rr, fs, 1.0), [1.0, 0.0, 0.5])
    np.testing.assert_allclose(interpolate(rr, fs, 0.0), [0.0, 1.0, 0.5])
    np.testing.assert_allclose(interpolate(rr, fs, 0.25), [0.25, 0.75, 0.5])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        interpolate(rr, fs, 1.5)
    with pytest.raises(ValueError, match="first-stage"):
        interpolate(rr, fs[:2], 0.5)
    assert check_weight(None) is None and check_weight(1) == 1.0
    with pytest.raises(TypeError):
        check_weight("0.5")


def test_order_scores_and_interpolation_with_the_order_sent():
    np.testing.assert_allclose(minmax(order_scores(5)), [1.0, 0.75, 0.5, 0.25, 0.0])
    rr = [0.0, 1.0, 4.0]  # the reranker prefers the last, the order sent the first
    np.testing.assert_allclose(interpolate_with_order(rr, 1.0), [0.0, 0.25, 1.0])
    np.testing.assert_allclose(interpolate_with_order(rr, 0.0), [1.0, 0.5, 0.0])
    np.testing.assert_allclose(interpolate_with_order(rr, 0.5), [0.5, 0.375, 0.5])
    assert int(np.argmax(interpolate_with_order(rr, 0.3))) == 0
    assert interpolate_with_order([], 0.5).size == 0
    with pytest.raises(ValueError):
        interpolate_with_order(rr, 2.0)


def test_interpolated_ranking_reorders_the_first_stage():
    run = constructed_run()
    assert [d for d, _ in interpolated_ranking(run.first_stage["q1"], run.rerank_scores["q1"], 1.0)] == [
        "b",
        "a",
        "c",
    ]
    assert [d for d, _ in interpolated_ranking(run.first_stage["q1"], run.rerank_scores["q1"], 0.5)] == [
        "a",
        "b",
        "c",
    ]


# --------------------------------------------------------------------------- used by default
@pytest.fixture()
def carded_model(tmp_path, tiny_cross_encoder_path):
    """A copy of the tiny cross-encoder whose winnow.json records interpolation weight 0."""
    folder = tmp_path / "carded"
    shutil.copytree(tiny_cross_encoder_path, folder)
    (folder / "winnow.json").write_text(json.dumps({"interpolation": {"weight": 0.0}}))
    return str(folder)


def test_engine_exposes_the_card(carded_model, tiny_cross_encoder_path):
    engine = CrossEncoderEngine(carded_model, device="cpu")
    assert engine.card == {"interpolation": {"weight": 0.0}}
    assert engine.interpolation_weight == 0.0
    assert not engine.is_loaded  # reading the card loads no model
    plain = CrossEncoderEngine(tiny_cross_encoder_path, device="cpu")
    assert plain.card is None and plain.interpolation_weight is None


def _docs() -> list[Document]:
    texts = ["apple banana cherry", "revenue income", "protein gene study", "the company said", "cash flow"]
    return [
        Document(id=f"d{i}", content=t, score=float(s))
        for i, (t, s) in enumerate(zip(texts, [1, 5, 3, 4, 2], strict=True))
    ]


def test_ranker_uses_the_card_weight_by_default_and_the_override_wins(carded_model, tiny_cross_encoder_path):
    docs = _docs()
    by_first_stage = [d.id for d in sorted(docs, key=lambda d: -d.score)]
    carded = WinnowRanker(model=carded_model, device="cpu", top_k=5)
    out = carded.run(query="apple", documents=docs)["documents"]
    assert [d.id for d in out] == by_first_stage  # weight 0 from the card: the first stage's order
    assert all(0.0 <= d.score <= 1.0 for d in out)

    pure = WinnowRanker(model=tiny_cross_encoder_path, device="cpu", top_k=5, scale_score=False)
    expected = [d.id for d in pure.run(query="apple", documents=docs)["documents"]]
    assert expected != by_first_stage  # the case distinguishes the two
    forced = WinnowRanker(model=carded_model, device="cpu", top_k=5, interpolation_weight=1.0)
    assert [d.id for d in forced.run(query="apple", documents=docs)["documents"]] == expected
    assert [d.score for d in docs] == [1, 5, 3, 4, 2]  # inputs untouched


def test_ranker_round_trips_the_weight(carded_model):
    ranker = WinnowRanker(model=carded_model, interpolation_weight=0.3)
    data = ranker.to_dict()
    assert data["init_parameters"]["interpolation_weight"] == 0.3
    assert WinnowRanker.from_dict(data).to_dict() == data
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        WinnowRanker(model=carded_model, interpolation_weight=1.5)


def test_ranker_without_scores_interpolates_with_input_order(carded_model):
    docs = [Document(id=f"d{i}", content=t) for i, t in enumerate(["cash flow", "apple", "gene study"])]
    out = WinnowRanker(model=carded_model, device="cpu").run(query="apple", documents=docs)["documents"]
    assert [d.id for d in out] == ["d0", "d1", "d2"]


class _Scorer:
    def __init__(self, scores, weight=None):
        self.scores = scores
        self.interpolation_weight = weight

    def score(self, query, documents):
        return np.asarray(self.scores[: len(documents)], dtype=np.float32)


def _hits():
    return [Hit(id=f"h{i}", text=f"text {i}", score=s) for i, s in enumerate([3.0, 2.0, 1.0])]


def test_rerank_hits_uses_the_scorer_card_weight_and_the_override():
    pure = rerank_hits("q", _hits(), _Scorer([0.0, 1.0, 2.0]))
    assert [h.id for h in pure] == ["h2", "h1", "h0"] and pure[0].rerank_score is None
    guarded = rerank_hits("q", _hits(), _Scorer([0.0, 1.0, 2.0], weight=0.0))
    assert [h.id for h in guarded] == ["h0", "h1", "h2"]
    assert guarded[0].rerank_score == 0.0 and guarded[0].score == 1.0
    assert "rerank_score" in guarded[0].to_dict() and "rerank_score" not in pure[0].to_dict()
    forced = rerank_hits("q", _hits(), _Scorer([0.0, 1.0, 2.0], weight=0.0), interpolation_weight=1.0)
    assert [h.id for h in forced] == ["h2", "h1", "h0"]


def test_two_stage_search_passes_the_weight():
    class First:
        name = "first"

        def retrieve_batch(self, queries, top_k=10):
            return [_hits()[:top_k] for _ in queries]

    scorer = _Scorer([0.0, 1.0, 2.0], weight=0.0)
    assert [r.id for r in TwoStageSearch(First(), scorer).search("q").results] == ["h0", "h1", "h2"]
    forced = TwoStageSearch(First(), scorer, interpolation_weight=1.0)
    assert [r.id for r in forced.search("q").results] == ["h2", "h1", "h0"]


# --------------------------------------------------------------------------- the report
def test_report_shows_pure_and_interpolated_and_warns():
    run = constructed_run()
    run.rerank_scores = {"q1": {"a": 0.0, "b": 1.0, "c": 0.5}, "q2": {"d": 1.0, "e": 0.0, "f": 0.5}}
    plain = build_report(run, n_resamples=50)
    assert plain["lift"]["nDCG@10"] < 0 and "interpolated" not in plain["metrics"]
    assert any("RERANKING HURTS" in w for w in plain["warnings"])
    assert any("no interpolation weight" in w for w in plain["warnings"])

    run.interpolation_weight, run.interpolation_source = 0.1, "argument"
    guarded = build_report(run, n_resamples=50)
    for key in ("dataset", "split", "queries", "depth", "first_stage", "reranker", "metrics", "lift"):
        assert key in guarded  # the DESIGN contract keys stay
    assert guarded["metrics"]["reranked"] == plain["metrics"]["reranked"]
    assert guarded["metrics"]["interpolated"]["nDCG@10"] == guarded["metrics"]["first_stage"]["nDCG@10"]
    assert guarded["lift_interpolated"]["nDCG@10"] == 0.0
    assert guarded["interpolation"] == {"weight": 0.1, "source": "argument"}
    assert any("does not hurt" in w for w in guarded["warnings"])
    assert guarded["per_query_interpolated"]["ties"] == 2
    assert "interpolated" in guarded["depths"]["10"]

    run.interpolation_weight = 0.9
    hurt = build_report(run, n_resamples=50)
    assert any("INTERPOLATED RERANKING HURTS" in w for w in hurt["warnings"])
    from winnow.rerank.evaluation.render import render_markdown

    text = render_markdown(hurt)
    assert "Interpolated reranker (weight 0.90" in text and "INTERPOLATED RERANKING HURTS" in text


def test_compare_reports_has_an_interpolated_column():
    from winnow.rerank.evaluation.compare import compare_reports

    run = constructed_run()
    run.interpolation_weight = 0.5
    report = build_report(run, n_resamples=20)
    report["reranker"]["model"] = "/models/ce"
    table = compare_reports([report])
    header = table.splitlines()[0]
    assert "ce (interpolated)" in header
    assert (
        table.splitlines()[2].split("|")[-2].strip() == f"{report['metrics']['interpolated']['nDCG@10']:.4f}"
    )
