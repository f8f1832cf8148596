from __future__ import annotations

import pytest

from winnow.retrieval.bm25 import BM25Retriever
from winnow.retrieval.corpus import Passage
from winnow.retrieval.hit import Hit
from winnow.retrieval.hybrid import HybridRetriever, reciprocal_rank_fusion

PASSAGES = [
    Passage(id="rev", text="Net revenue increased 12 percent to 4.1 billion dollars in fiscal 2023."),
    Passage(id="debt", text="Long-term debt covenants require a leverage ratio below 3.5."),
    Passage(
        id="vax", text="Claim: vaccines contain microchips | Rating: False | No vaccine contains a chip."
    ),
    Passage(id="gas#0", text="The city council banned gas stoves", parent_id="gas"),
    Passage(id="gas#1", text="in newly constructed homes starting 2025.", parent_id="gas"),
]


def test_bm25_finds_lexical_match_with_stemming():
    bm25 = BM25Retriever(PASSAGES)
    hits = bm25.retrieve("revenues increasing", top_k=2)
    assert hits[0].id == "rev"
    assert hits[0].score > 0


def test_bm25_collapses_chunks_to_documents():
    hits = BM25Retriever(PASSAGES).retrieve("gas stoves banned in homes", top_k=3)
    assert hits[0].id == "gas"
    assert "gas#0" not in [h.id for h in hits]


def test_bm25_rejects_bad_arguments():
    with pytest.raises(ValueError):
        BM25Retriever([])
    with pytest.raises(ValueError):
        BM25Retriever(PASSAGES).retrieve("x", top_k=0)


def test_rrf_matches_hand_computed_scores():
    a = [Hit(id="x", score=9), Hit(id="y", score=8)]
    b = [Hit(id="y", score=1), Hit(id="z", score=0.5)]
    fused = reciprocal_rank_fusion([a, b], k=60)
    scores = {h.id: h.score for h in fused}
    assert scores["y"] == pytest.approx(1 / 62 + 1 / 61)
    assert scores["x"] == pytest.approx(1 / 61)
    assert [h.id for h in fused] == ["y", "x", "z"]


class _Fixed:
    def __init__(self, name, ids):
        self.name, self.ids = name, ids

    def retrieve_batch(self, queries, top_k=10):
        return [[Hit(id=i, score=1.0) for i in self.ids[:top_k]] for _ in queries]


def test_hybrid_fuses_retrievers_and_respects_top_k():
    hybrid = HybridRetriever([_Fixed("a", ["1", "2", "3"]), _Fixed("b", ["3", "1"])], depth=10)
    out = hybrid.retrieve_batch(["q1", "q2"], top_k=2)
    assert len(out) == 2
    assert [h.id for h in out[0]] == ["1", "3"]
    with pytest.raises(ValueError):
        HybridRetriever([_Fixed("a", [])])
