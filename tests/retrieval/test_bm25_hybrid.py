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


def test_hybrid_ranking_does_not_depend_on_retriever_order():
    dense = _Fixed("dense", ["a", "b", "c", "d"])
    bm25 = _Fixed("bm25", ["c", "e", "a", "f"])
    forward = HybridRetriever([dense, bm25], depth=10).retrieve("q", top_k=10)
    backward = HybridRetriever([bm25, dense], depth=10).retrieve("q", top_k=10)
    assert [(h.id, h.score, h.ranks) for h in forward] == [(h.id, h.score, h.ranks) for h in backward]
    # a and c tie (1/61 + 1/63), as do b and e, and d and f: dense's ranks decide, as fusing [dense, bm25] did
    assert [h.id for h in forward] == ["a", "c", "b", "e", "d", "f"]
    assert forward[0].ranks == {"dense": 1, "bm25": 3}
    assert forward[3].ranks == {"bm25": 2}


def test_rrf_takes_text_from_the_dense_hit_first_and_merges_meta():
    dense = [Hit(id="x", text="from dense", meta={"best_chunk": "x#0", "year": 1}, score=0.9)]
    bm25 = [Hit(id="x", text="from bm25", meta={"year": 2}, score=7.0), Hit(id="x", score=1.0)]
    for order in ((dense, bm25), (bm25, dense)):
        names = ["dense", "bm25"] if order[0] is dense else ["bm25", "dense"]
        (hit,) = reciprocal_rank_fusion(list(order), names=names)
        assert hit.text == "from dense" and hit.meta == {"best_chunk": "x#0", "year": 1}  # dense values win
        assert hit.score == pytest.approx(2 / 61)  # x counted once per ranking
    with pytest.raises(ValueError):
        reciprocal_rank_fusion([dense, bm25], names=["dense"])


def test_bm25_allow_ids_restricts_exactly():
    bm25 = BM25Retriever(PASSAGES)
    assert [h.id for h in bm25.retrieve("revenue debt gas", top_k=5, allow_ids=["debt", "gas"])] == [
        h.id for h in bm25.retrieve("revenue debt gas", top_k=5) if h.id in {"debt", "gas"}
    ]
    assert bm25.retrieve("revenue", top_k=3, allow_ids=["debt"]) == []
    assert bm25.retrieve("revenue", top_k=3, allow_ids=[]) == []
