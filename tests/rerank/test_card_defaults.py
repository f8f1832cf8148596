"""A model card's defaults reach every path: its depth sets how many candidates are reranked, and weight 0
keeps the first stage's order without running the model, saying why (search, Haystack ranker; REST and CLI:
tests/api/test_app_card_defaults.py, tests/api/cli/test_search_card_defaults.py)."""

from __future__ import annotations

import numpy as np
from haystack import Document

from tests.rerank.helpers import model_with_card
from winnow.rerank.ranker import WinnowRanker
from winnow.rerank.search import DEFAULT_CANDIDATES, TwoStageSearch
from winnow.retrieval.hit import Hit


class _Retriever:
    """Returns ``n`` hits in a fixed order, remembering how many were asked for."""

    name = "dense"

    def __init__(self) -> None:
        self.asked: list[int] = []

    def retrieve_batch(self, queries, top_k, **_):
        self.asked.append(top_k)
        return [
            [Hit(id=f"d{i}", text=f"text {i}", score=1.0 - i / 100) for i in range(top_k)] for _ in queries
        ]


class _Scorer:
    """A scorer with a model card; counts its calls; ranks the last candidate first."""

    model_name = "/nowhere/general"

    def __init__(self, card: dict) -> None:
        self.card = card
        self.calls = 0

    @property
    def interpolation_weight(self):
        return self.card.get("interpolation", {}).get("weight")

    def score(self, query, documents):
        self.calls += 1
        return np.arange(len(documents), dtype=np.float64)


WEIGHT_ZERO = {"interpolation": {"weight": 0.0, "split": "x/dev"}, "depth": 5}


def test_the_cards_depth_sets_the_candidates_reranked():
    retriever = _Retriever()
    searcher = TwoStageSearch(retriever, _Scorer({"depth": 7, "interpolation": {"weight": 1.0}}))
    assert searcher.candidates == 7
    result = searcher.search("q", top_k=3)
    assert retriever.asked == [7] and result.reranked
    assert [r.id for r in result.results] == ["d6", "d5", "d4"]
    assert TwoStageSearch(retriever, _Scorer({})).candidates == DEFAULT_CANDIDATES
    assert TwoStageSearch(retriever, _Scorer({"depth": 7}), candidates=30).candidates == 30


def test_weight_zero_keeps_the_first_stage_without_running_the_model(caplog, tmp_path):
    scorer = _Scorer({"interpolation": {"weight": 0.0, "split": "scifact/train, tatqa/dev"}})
    scorer.model_name = str(tmp_path / "general")  # a model folder: named, its path never shown
    (tmp_path / "general").mkdir()
    with caplog.at_level("WARNING"):
        searcher = TwoStageSearch(_Retriever(), scorer)
    assert searcher.first_stage_only and "winnow finetune" in searcher.first_stage_only
    assert "general" in searcher.first_stage_only and str(tmp_path) not in searcher.first_stage_only
    assert any("interpolation weight 0" in r.getMessage() for r in caplog.records)
    result = searcher.search("q", top_k=3)
    assert scorer.calls == 0 and not result.reranked
    assert [r.id for r in result.results] == ["d0", "d1", "d2"]
    # a weight passed in overrides the card either way
    assert TwoStageSearch(_Retriever(), scorer, interpolation_weight=0.5).first_stage_only is None
    weighted = TwoStageSearch(
        _Retriever(), _Scorer({"interpolation": {"weight": 0.5}}), interpolation_weight=0
    )
    assert "not run" in weighted.first_stage_only


def test_the_ranker_at_weight_zero_keeps_the_incoming_order_and_loads_no_model(
    tiny_cross_encoder_path, tmp_path, caplog
):
    ranker = WinnowRanker(
        model=model_with_card(tiny_cross_encoder_path, tmp_path / "m", WEIGHT_ZERO), device="cpu"
    )
    docs = [Document(id=f"d{i}", content=f"text {i}", score=1.0 - i / 10) for i in range(4)]
    with caplog.at_level("WARNING"):
        out = ranker.run(query="q", documents=docs, top_k=3)["documents"]
    assert [d.id for d in out] == ["d0", "d1", "d2"]
    assert ranker._engine is not None and not ranker._engine.is_loaded  # only the card was read
    assert sum("winnow finetune" in r.getMessage() for r in caplog.records) == 1
