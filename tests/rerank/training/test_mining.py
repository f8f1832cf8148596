"""Mining training pairs from a BEIR split: positives from qrels, hard negatives from a first stage."""

from __future__ import annotations

import logging

import pytest

from tests.conftest import write_tiny_beir
from tests.rerank.training.helpers import FixedOrder, beir_with_train, positives_by_query
from winnow.rerank.training.mining import mine_beir, resolve_train_split
from winnow.retrieval.corpus import load_beir


def test_mined_negatives_never_includepositives_by_query(tmp_path):
    dataset = load_beir(beir_with_train(tmp_path / "beir"))
    source = mine_beir(dataset, "train", first_stage="bm25", hard_negatives=3, skip_top=0, random_negatives=5)
    positives = positives_by_query(dataset, "train")
    negatives = [p for p in source.pairs if p.label == 0.0]
    assert negatives, "mining found no negatives"
    for pair in negatives:
        assert pair.document not in positives[pair.query]
    # every judged positive is a label-1 pair
    got = {(p.query, p.document) for p in source.pairs if p.label == 1.0}
    assert got == {(q, d) for q, docs in positives.items() for d in docs}
    # the self-hit document (id == query id "q3") is never a negative of q3
    q3 = dataset.queries["q3"]
    assert all(p.document != "cherry" or p.query != q3 for p in negatives)


def test_hard_negatives_follow_the_first_stage_after_skip_top(tmp_path):
    dataset = load_beir(beir_with_train(tmp_path / "beir"))
    retriever = FixedOrder(dataset)
    full = mine_beir(dataset, "train", first_stage=retriever, hard_negatives=4, skip_top=0)
    skipped = mine_beir(dataset, "train", first_stage=retriever, hard_negatives=2, skip_top=1)

    def negatives(source):
        out: dict[str, list[str]] = {}
        for p in source.pairs:
            if p.label == 0.0:
                out.setdefault(p.query, []).append(p.document)
        return out

    a, b = negatives(full), negatives(skipped)
    assert all(len(v) == 4 for v in a.values()) and len(a) == 12
    text_of = {p.id: p.full_text() for p in dataset.corpus}
    for query, docs in a.items():
        qid = next(q for q, t in dataset.queries.items() if t == query)
        relevant = {d for d, g in dataset.qrels["train"][qid].items() if g > 0}
        expected = [d for d in retriever.order if d not in relevant and d != qid][:4]
        assert docs == [text_of[d] for d in expected]  # top-ranked non-relevant documents, in rank order
    for query, docs in b.items():
        assert docs == a[query][1:3]  # the first non-relevant hit is skipped, the next two kept
    assert skipped.info["skip_top"] == 1 and skipped.info["hard_negatives"] == 2


def test_random_negatives_are_seeded(tmp_path):
    dataset = load_beir(beir_with_train(tmp_path / "beir"))
    one = mine_beir(dataset, "train", hard_negatives=0, random_negatives=3, seed=1)
    same = mine_beir(dataset, "train", hard_negatives=0, random_negatives=3, seed=1)
    other = mine_beir(dataset, "train", hard_negatives=0, random_negatives=3, seed=2)
    assert one.pairs == same.pairs
    assert one.pairs != other.pairs
    assert one.info["random_negative_pairs"] == 3 * 12


def test_train_falls_back_to_dev_and_says_so(tmp_path, caplog):
    path = write_tiny_beir(tmp_path / "beir")
    (path / "qrels" / "test.tsv").rename(path / "qrels" / "dev.tsv")
    dataset = load_beir(path)
    with caplog.at_level(logging.INFO, logger="winnow.rerank.training.mining"):
        assert resolve_train_split(dataset, "train") == "dev"
    assert "no train qrels" in caplog.text and "dev" in caplog.text
    with pytest.raises(ValueError, match="available"):
        resolve_train_split(dataset, "validation")
    source = mine_beir(dataset, "train", hard_negatives=1)
    assert source.split == "dev" and source.info["split"] == "dev"
