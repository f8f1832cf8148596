from __future__ import annotations

import ir_measures
import numpy as np
import pytest

from winnow.rerank.evaluation.report import build_report
from winnow.rerank.evaluation.runs import run_evaluation
from winnow.rerank.evaluation.trec import TrecFormatError, read_run, save_runs, write_run
from winnow.retrieval.corpus import load_beir


class GradeScorer:
    """Relevant documents high, everything else tied at 0 (ties must not change the metric)."""

    def __init__(self, dataset) -> None:
        judged = {d for q in dataset.qrels["test"].values() for d, g in q.items() if g > 0}
        self.relevant = {p.full_text() for p in dataset.corpus if p.id in judged}

    def score(self, query, documents):
        return np.array([1.0 if d in self.relevant else 0.0 for d in documents])


def test_write_then_read_round_trip(tmp_path):
    lists = {"q1": [("d1", 2.5), ("d2", 1.0)], "q2": [("d3", -0.5)]}
    path = write_run(tmp_path / "runs" / "a.trec", lists, "sys")
    lines = path.read_text().splitlines()
    assert lines[0] == "q1 Q0 d1 1 2.5 sys" and lines[2] == "q2 Q0 d3 1 -0.5 sys"
    assert read_run(path) == {"q1": {"d1": 2.5, "d2": 1.0}, "q2": {"d3": -0.5}}


def test_ties_are_written_in_list_order(tmp_path):
    path = write_run(tmp_path / "t.trec", {"q": [("a", 1.0), ("b", 1.0), ("c", 1.0)]}, "sys")
    run = read_run(path)["q"]
    assert run["a"] > run["b"] > run["c"] and run["a"] == 1.0 and run["c"] == pytest.approx(1.0)


def test_bad_ids_and_bad_lines_are_reported(tmp_path):
    with pytest.raises(ValueError, match="whitespace"):
        write_run(tmp_path / "x.trec", {"q 1": [("d", 1.0)]}, "sys")
    with pytest.raises(ValueError, match="run tag"):
        write_run(tmp_path / "x.trec", {"q": [("d", 1.0)]}, "my sys")
    bad = tmp_path / "bad.trec"
    bad.write_text("q1 Q0 d1 1 0.5 sys\nq1 d2 1\n")
    with pytest.raises(TrecFormatError, match=r"bad.trec:2: expected 6 columns"):
        read_run(bad)
    bad.write_text("q1 Q0 d1 1 high sys\n")
    with pytest.raises(TrecFormatError, match="not a number"):
        read_run(bad)


def test_saved_runs_reproduce_the_report(tiny_beir_dir, tmp_path):
    dataset = load_beir(tiny_beir_dir)
    run = run_evaluation(
        dataset,
        "test",
        first_stage="bm25",
        reranker=GradeScorer(dataset),
        depths=[1, 10],
        show_progress=False,
    )
    report = build_report(run)
    paths = save_runs(run, tmp_path / "runs")
    assert set(paths) == {"first_stage", "reranked", "reranked@1"}
    qrels = dataset.qrels["test"]
    for stage, key in (("first_stage", "first_stage"), ("reranked", "reranked")):
        scores = ir_measures.calc_aggregate(
            [ir_measures.nDCG @ 10, ir_measures.RR @ 10], qrels, read_run(paths[key])
        )
        assert round(scores[ir_measures.nDCG @ 10], 4) == round(report["metrics"][stage]["nDCG@10"], 4)
        assert round(scores[ir_measures.RR @ 10], 4) == round(report["metrics"][stage]["RR@10"], 4)
    at1 = ir_measures.calc_aggregate([ir_measures.nDCG @ 10], qrels, read_run(paths["reranked@1"]))
    assert round(at1[ir_measures.nDCG @ 10], 4) == round(report["depths"]["1"]["reranked"]["nDCG@10"], 4)
    first_line = paths["reranked"].read_text().splitlines()[0].split()
    assert first_line[1] == "Q0" and first_line[3] == "1" and first_line[5] == "winnow-bm25+rerank"
