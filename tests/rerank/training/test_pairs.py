"""Training pairs: pairs files, label validation, mixing sources and the held-apart split."""

from __future__ import annotations

import json
import logging

import pytest

from tests.rerank.training.helpers import beir_with_train
from winnow.rerank.training.mining import mine_beir
from winnow.rerank.training.pairs import TrainingPair, build_training_set, load_pairs_file
from winnow.retrieval.corpus import load_beir


# --------------------------------------------------------------------------- pairs files
def test_jsonl_with_labels(tmp_path):
    path = tmp_path / "pairs.jsonl"
    rows = [
        {"query": "q1", "document": "d1", "label": 1},
        {"query": "q1", "passage": "d2", "label": 0.0},
        {"query": "q2", "document": "d3", "label": 0.25},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    source = load_pairs_file(path)
    assert source.kind == "pairs" and source.name == "pairs.jsonl"
    assert [(p.query, p.document, p.label) for p in source.pairs] == [
        ("q1", "d1", 1.0),
        ("q1", "d2", 0.0),
        ("q2", "d3", 0.25),
    ]


def test_jsonl_with_positive_and_negatives(tmp_path):
    path = tmp_path / "triplets.jsonl"
    rows = [
        {"query": "q1", "positive": "p1", "negatives": ["n1", "n2"]},
        {"query": "q2", "positive": ["p2", "p3"], "negatives": []},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pairs = load_pairs_file(path).pairs
    assert [(p.query, p.document, p.label) for p in pairs] == [
        ("q1", "p1", 1.0),
        ("q1", "n1", 0.0),
        ("q1", "n2", 0.0),
        ("q2", "p2", 1.0),
        ("q2", "p3", 1.0),
    ]


@pytest.mark.parametrize("suffix,delimiter", [(".csv", ","), (".tsv", "\t")])
def test_csv_and_tsv(tmp_path, suffix, delimiter):
    path = tmp_path / f"pairs{suffix}"
    lines = [
        "query,document,label",
        "what is a cell,a cell is the unit of life,1",
        "what is a cell,debt rose,0",
    ]
    path.write_text("\n".join(line.replace(",", delimiter) for line in lines) + "\n")
    pairs = load_pairs_file(path).pairs
    assert [(p.document, p.label) for p in pairs] == [("a cell is the unit of life", 1.0), ("debt rose", 0.0)]


@pytest.mark.parametrize(
    "suffix,content,line",
    [
        (".csv", "query,document,label\nq,d,1\nq,e,-1\n", 3),
        (".tsv", "query\tdocument\tlabel\nq\td\t1.5\n", 2),
        (
            ".jsonl",
            '{"query": "q", "document": "d", "label": 0}\n{"query": "q", "document": "e", "label": -0.5}\n',
            2,
        ),
        (".jsonl", '{"query": "q", "document": "d", "label": "high"}\n', 1),
    ],
)
def test_labels_outside_0_1_are_refused_naming_file_and_line(tmp_path, suffix, content, line):
    path = tmp_path / f"bad{suffix}"
    path.write_text(content)
    with pytest.raises(ValueError) as err:
        load_pairs_file(path)
    assert f"{path}:{line}" in str(err.value)
    assert "[0, 1]" in str(err.value)


def test_pairs_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_pairs_file(tmp_path / "missing.jsonl")
    wrong = tmp_path / "pairs.txt"
    wrong.write_text("q\td\t1\n")
    with pytest.raises(ValueError, match="must be .jsonl, .csv or .tsv"):
        load_pairs_file(wrong)
    no_label = tmp_path / "nolabel.csv"
    no_label.write_text("query,document\nq,d\n")
    with pytest.raises(ValueError, match="query, document"):
        load_pairs_file(no_label)
    empty_query = tmp_path / "empty.jsonl"
    empty_query.write_text('{"query": "", "document": "d", "label": 1}\n')
    with pytest.raises(ValueError, match="empty.jsonl:1"):
        load_pairs_file(empty_query)


# --------------------------------------------------------------------------- merging and the split
def test_mixing_sources_and_dropping_negatives_that_are_positives(tmp_path):
    dataset = load_beir(beir_with_train(tmp_path / "beir"))
    beir = mine_beir(dataset, "train", hard_negatives=2, skip_top=0)
    query = dataset.queries["q0"]
    positive = next(p.document for p in beir.pairs if p.query == query and p.label == 1.0)
    pairs = tmp_path / "extra.jsonl"
    rows = [
        {"query": query, "positive": "apple extra positive", "negatives": [positive, "tax said report"]},
        {"query": "brand new query", "document": "some doc", "label": 1},
        {"query": "brand new query", "document": "other doc", "label": 0},
    ]
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    merged = build_training_set([beir, load_pairs_file(pairs)], eval_fraction=0.0, min_pairs=0)
    everything = merged.train + merged.eval
    sources = {p.source for p in everything}
    assert sources == {"beir/train", "extra.jsonl"}
    assert merged.dropped_negatives == 1
    assert TrainingPair(query, positive, 0.0, "extra.jsonl") not in everything
    assert TrainingPair(query, positive, 1.0, "beir/train") in everything
    positives_by_query: dict[str, set[str]] = {}
    for p in everything:
        if p.label > 0:
            positives_by_query.setdefault(p.query, set()).add(p.document)
    assert all(p.document not in positives_by_query.get(p.query, set()) for p in everything if p.label == 0)


def test_split_is_by_query_and_seeded(tmp_path):
    dataset = load_beir(beir_with_train(tmp_path / "beir"))
    source = mine_beir(dataset, "train", hard_negatives=2, random_negatives=1)
    one = build_training_set([source], eval_fraction=0.25, seed=7, min_pairs=0)
    again = build_training_set([source], eval_fraction=0.25, seed=7, min_pairs=0)
    other = build_training_set([source], eval_fraction=0.25, seed=8, min_pairs=0)
    train_queries = {p.query for p in one.train}
    eval_queries = {p.query for p in one.eval}
    assert len(eval_queries) == 3 and one.eval_queries == eval_queries
    assert not train_queries & eval_queries
    assert len(one.train) + len(one.eval) == len(source.pairs)
    assert one.eval_queries == again.eval_queries
    assert one.eval_queries != other.eval_queries
    samples = one.reranking_samples()
    assert {s["query"] for s in samples} <= eval_queries and samples
    for sample in samples:
        assert sample["positive"] and len(sample["documents"]) >= 2


def test_summary_records_what_rebuilds_the_held_apart_split(tmp_path):
    # a card's data summary must be enough to rebuild the same held-apart queries later (to tune on them)
    dataset = load_beir(beir_with_train(tmp_path / "beir"))
    source = mine_beir(dataset, "train", hard_negatives=1, max_queries=10)
    built = build_training_set([source], eval_fraction=0.25, seed=7, min_pairs=0)
    summary = built.summary()
    assert (summary["seed"], summary["eval_fraction"]) == (7, 0.25)
    assert summary["sources"][0]["max_queries"] == 10
    settings = summary["sources"][0]
    again = build_training_set(
        [mine_beir(dataset, settings["split"], hard_negatives=3, max_queries=settings["max_queries"])],
        eval_fraction=summary["eval_fraction"],
        seed=summary["seed"],
        min_pairs=0,
    )
    assert again.eval_queries == built.eval_queries  # negatives count does not move the split


def test_tiny_set_warns_with_its_size(tmp_path, caplog):
    path = tmp_path / "two.jsonl"
    path.write_text(
        '{"query": "q", "document": "d", "label": 1}\n{"query": "q", "document": "e", "label": 0}\n'
    )
    with caplog.at_level(logging.WARNING, logger="winnow.rerank.training.pairs"):
        build_training_set([load_pairs_file(path)], eval_fraction=0.0)
    assert "only 2 training pairs" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="winnow.rerank.training.pairs"):
        build_training_set([load_pairs_file(path)], eval_fraction=0.0, min_pairs=2)
    assert "training pairs" not in caplog.text


def test_build_training_set_refuses_bad_input():
    with pytest.raises(ValueError, match="no training data"):
        build_training_set([])
    with pytest.raises(ValueError, match="eval_fraction"):
        build_training_set([_one_pair_source()], eval_fraction=1.5)


def _one_pair_source():
    from winnow.rerank.training.pairs import PairSource

    return PairSource(name="x", kind="pairs", pairs=[TrainingPair("q", "d", 1.0, "x")])
