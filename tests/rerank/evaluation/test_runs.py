from __future__ import annotations

import json
import logging

import ir_measures
import numpy as np
import pytest

from winnow.rerank.evaluation.compare import compare_reports
from winnow.rerank.evaluation.measures import per_query_metrics
from winnow.rerank.evaluation.report import build_report, write_report
from winnow.rerank.evaluation.runs import EvalRun, as_run, parse_depths, run_evaluation
from winnow.retrieval.bm25 import BM25Retriever
from winnow.retrieval.corpus import load_beir

# The report skeleton of DESIGN.md ("Evaluation report"): every key here must exist in a report.
DESIGN_SKELETON = {
    "dataset": "scifact",
    "split": "test",
    "queries": 300,
    "depth": 100,
    "first_stage": {"name": "dense", "model": "..."},
    "reranker": {"model": "..."},
    "metrics": {
        "first_stage": {"nDCG@10": 0.0, "RR@10": 0.0, "R@100": 0.0, "AP": 0.0},
        "reranked": {"nDCG@10": 0.0, "RR@10": 0.0, "R@100": 0.0, "AP": 0.0},
    },
    "lift": {"nDCG@10": 0.0},
    "significance": {"nDCG@10": {"test": "paired t", "p_value": 0.0}},
    "per_query": {"wins": 0, "losses": 0, "ties": 0},
    "latency_ms": {"first_stage_p50": 0.0, "rerank_p50": 0.0, "rerank_p95": 0.0},
}
ALL_MEASURES = ("nDCG@10", "RR@10", "R@10", "R@100", "AP", "P@1")


def _missing_keys(skeleton: dict, report: dict, prefix: str = "") -> list[str]:
    missing = []
    for key, value in skeleton.items():
        if key not in report:
            missing.append(prefix + key)
        elif isinstance(value, dict) and isinstance(report[key], dict):
            missing += _missing_keys(value, report[key], f"{prefix}{key}.")
    return missing


class RandomScorer:
    """Scores every document at random (seeded)."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def score(self, query, documents):
        return self.rng.random(len(documents))


class OracleScorer:
    """Scores each document by its judged grade (reads the qrels), so relevant documents come first."""

    def __init__(self, dataset, split: str = "test", sign: float = 1.0) -> None:
        grades: dict[str, int] = {}
        for judged in dataset.qrels[split].values():
            for doc, grade in judged.items():
                grades[doc] = max(grades.get(doc, 0), grade)
        self.grade_of_text = {p.full_text(): grades.get(p.id, 0) for p in dataset.corpus}
        self.sign = sign
        self.calls = 0
        self.documents_scored = 0

    def score(self, query, documents):
        self.calls += 1
        self.documents_scored += len(documents)
        return np.array([self.sign * self.grade_of_text[d] for d in documents], dtype=np.float32)


class CountingRetriever:
    def __init__(self, inner) -> None:
        self.inner = inner
        self.name = inner.name
        self.calls: list[int] = []

    def retrieve_batch(self, queries, top_k=10):
        self.calls.append(top_k)
        return self.inner.retrieve_batch(queries, top_k)


@pytest.fixture()
def dataset(tiny_beir_dir):
    return load_beir(tiny_beir_dir)


def _report(dataset, reranker, **kwargs):
    run = run_evaluation(
        dataset, "test", first_stage="bm25", reranker=reranker, show_progress=False, **kwargs
    )
    return run, build_report(run)


def test_random_reranker_gives_no_significant_lift(dataset):
    _, report = _report(dataset, RandomScorer(seed=1))
    assert abs(report["lift"]["nDCG@10"]) < 0.1
    sig = report["significance"]["nDCG@10"]
    assert sig["test"] == "paired t"
    assert sig["p_value"] > 0.05 and sig["permutation_p_value"] > 0.05
    lo, hi = sig["ci95"]
    assert lo <= 0 <= hi


def test_oracle_reranker_gives_large_significant_lift(dataset):
    _, report = _report(dataset, OracleScorer(dataset))
    assert report["metrics"]["reranked"]["nDCG@10"] == pytest.approx(1.0)
    assert report["lift"]["nDCG@10"] > 0.15
    sig = report["significance"]["nDCG@10"]
    assert sig["p_value"] < 0.05 and sig["permutation_p_value"] < 0.05
    assert sig["ci95"][0] > 0
    pq = report["per_query"]
    assert pq["wins"] > pq["losses"] == 0 and pq["wins"] + pq["ties"] == 12
    assert report["warnings"] == [] and report["hurt_most"] == []


def test_report_has_every_design_key_and_the_extras(dataset):
    _, report = _report(dataset, OracleScorer(dataset), depths=[2, 10])
    assert _missing_keys(DESIGN_SKELETON, report) == []
    for stage in ("first_stage", "reranked"):
        assert tuple(report["metrics"][stage]) == ALL_MEASURES
    assert set(report["significance"]) == set(ALL_MEASURES)
    assert set(report["significance"]["AP"]) >= {"test", "p_value", "permutation_p_value", "ci95"}
    assert set(report["latency_ms"]) >= {
        "first_stage_p50",
        "first_stage_p95",
        "rerank_p50",
        "rerank_p95",
        "pairs_per_second",
        "device",
    }
    assert report["latency_ms"]["pairs_per_second"] > 0
    assert set(report["depths"]) == {"2", "10"} and report["depth"] == 10
    assert report["first_stage"]["name"] == "bm25" and report["reranker"]["model"] == "OracleScorer"
    json.dumps(report, allow_nan=False)


def test_all_depths_come_from_one_first_stage_pass_and_one_rerank_pass(dataset):
    retriever = CountingRetriever(BM25Retriever(dataset.corpus))
    scorer = OracleScorer(dataset)
    run = run_evaluation(
        dataset, "test", first_stage=retriever, reranker=scorer, depths="5,1,2", show_progress=False
    )
    assert run.depths == [1, 2, 5]
    # one call per query, at the deepest depth (+1: a query id is also a corpus id, arguana-style)
    assert retriever.calls == [6] * 12
    assert scorer.calls == 12 and scorer.documents_scored == run.pairs
    assert run.pairs == sum(len(c) for c in run.first_stage.values())
    report = build_report(run)
    assert retriever.calls == [6] * 12 and scorer.calls == 12  # the report made no model calls
    depth1 = report["depths"]["1"]
    assert depth1["reranked"] == depth1["first_stage"]  # reordering one candidate changes nothing
    assert report["depths"]["2"]["lift"]["nDCG@10"] > 0
    # a depth-d rerank reorders exactly the first stage's top d
    for qid in run.queries:
        assert {d for d, _ in run.reranked_lists(2)[qid]} == {d for d, _ in run.first_stage_lists(2)[qid]}


def test_self_hits_are_dropped_arguana_style(dataset):
    run, _ = _report(dataset, None)
    assert run.self_hits_removed == 1
    assert all(qid not in dict(ranked) for qid, ranked in run.first_stage.items())
    assert run.first_stage["q3"] == [("rel-q3", pytest.approx(run.first_stage["q3"][0][1]))]


def test_without_a_reranker_the_keys_exist_and_are_empty(dataset):
    _, report = _report(dataset, None)
    assert _missing_keys(DESIGN_SKELETON, report) == []
    assert report["metrics"]["reranked"] is None and report["lift"] is None
    assert report["reranker"]["model"] is None and report["latency_ms"]["rerank_p50"] is None


def test_negative_lift_warns_loudly_and_lists_the_hurt_queries(dataset, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="winnow.rerank.evaluation.report"):
        _, report = _report(dataset, OracleScorer(dataset, sign=-1.0))
    assert report["lift"]["nDCG@10"] < 0
    assert any("RERANKING HURTS" in w for w in report["warnings"])
    assert any("RERANKING HURTS" in r.getMessage() for r in caplog.records)
    hurt = report["hurt_most"]
    assert 0 < len(hurt) <= 10 and hurt == sorted(hurt, key=lambda h: h["delta"])
    first = hurt[0]
    assert first["first_relevant_rank_first_stage"] == 1 and first["first_relevant_rank_reranked"] == 2
    assert first["query"] == dataset.queries[first["query_id"]]
    paths = write_report(report, tmp_path / "neg.json")
    assert "WARNING" in paths["markdown"].read_text()


def test_report_files_json_markdown_and_plot(dataset, tmp_path):
    _, report = _report(dataset, OracleScorer(dataset), depths=[1, 2, 10])
    paths = write_report(report, tmp_path / "out" / "report.json")
    assert json.loads(paths["json"].read_text())["metrics"] == report["metrics"]
    markdown = paths["markdown"].read_text()
    assert paths["markdown"] == tmp_path / "out" / "report.md"
    assert "| nDCG@10 | 0.8155 | 1.0000 | +0.1845 |" in markdown
    assert "6 wins, 0 losses, 6 ties" in markdown
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_mode_table(dataset, tmp_path):
    _, good = _report(dataset, OracleScorer(dataset))
    _, rand = _report(dataset, RandomScorer(seed=1))
    other = {**rand, "dataset": "other"}
    files = [write_report(r, tmp_path / f"{i}.json", plot=False)["json"] for i, r in enumerate((good, other))]
    table = compare_reports(files).splitlines()
    assert table[0] == "| dataset (nDCG@10) | bm25 | bm25 + OracleScorer | bm25 + RandomScorer |"
    assert table[2] == "| tinybeir | 0.8155 | 1.0000 | – |"
    assert table[3].startswith("| other | 0.8155 | – | ")
    assert len(table) == 4  # no mean row: not every system covers every dataset
    with pytest.raises(ValueError, match="not a winnow evaluation report"):
        (tmp_path / "bad.json").write_text("[]")
        compare_reports([tmp_path / "bad.json"])


def test_parse_depths():
    assert parse_depths("100") == [100]
    assert parse_depths("50, 10,20,10") == [10, 20, 50]
    assert parse_depths([100, 10]) == [10, 100]
    for bad in ("0", "ten", "", "10,-5"):
        with pytest.raises(ValueError, match="depth"):
            parse_depths(bad)


def test_eval_run_rejects_incomplete_inputs():
    with pytest.raises(ValueError, match="no candidate list"):
        EvalRun("d", "test", {"q": "text"}, {"q": {"a": 1}}, [10], first_stage={})
    with pytest.raises(ValueError, match="no rerank score"):
        EvalRun("d", "test", {"q": "t"}, {"q": {"a": 1}}, [10], {"q": [("a", 1.0)]}, rerank_scores={"q": {}})


def test_dense_over_an_index_dir_and_hybrid_in_memory(dataset, tmp_path, tiny_bi_encoder_path):
    from winnow.retrieval.embedder import Embedder
    from winnow.retrieval.indexing import build_index

    embedder = Embedder(tiny_bi_encoder_path, show_progress=False)
    build_index(dataset.corpus, embedder, chunk_words=2, chunk_overlap=0, show_progress=False).save(
        tmp_path / "idx"
    )
    run = run_evaluation(
        dataset, "test", first_stage="dense", index=tmp_path / "idx", depths=[5], show_progress=False
    )
    corpus_ids = {p.id for p in dataset.corpus}
    assert run.first_stage_info["chunked"] is True and run.first_stage_info["embedder"] == embedder.name
    for qid, ranked in run.first_stage.items():  # documents, not chunks; each once; no self-hits
        ids = [d for d, _ in ranked]
        assert len(ids) == 5 and len(set(ids)) == 5 and set(ids) <= corpus_ids and qid not in ids
    hybrid = run_evaluation(
        dataset, "test", first_stage="hybrid", embedder=embedder, depths=[3], show_progress=False
    )
    assert build_report(hybrid)["first_stage"]["name"] == "hybrid"
    # the fusion does not follow the evaluated depth: top 3 is the same whether 3 or 6 are evaluated,
    # and the same as the hybrid `winnow search` builds
    deeper = run_evaluation(
        dataset, "test", first_stage="hybrid", embedder=embedder, depths=[6], show_progress=False
    )
    assert hybrid.first_stage_info["fusion_depth"] == deeper.first_stage_info["fusion_depth"] == 100
    assert hybrid.first_stage_lists(3) == deeper.first_stage_lists(3)


def test_an_index_of_another_corpus_is_refused(dataset, tmp_path, tiny_bi_encoder_path):
    from winnow.retrieval.corpus import Passage
    from winnow.retrieval.embedder import Embedder
    from winnow.retrieval.indexing import build_index

    embedder = Embedder(tiny_bi_encoder_path, show_progress=False)
    other = [Passage(id=f"other-{i}", text=f"unrelated text {i}") for i in range(10)]
    build_index(other, embedder, show_progress=False).save(tmp_path / "other")
    with pytest.raises(ValueError, match="does not hold tinybeir's corpus"):
        run_evaluation(dataset, "test", first_stage="dense", index=tmp_path / "other", show_progress=False)


def test_haystack_pipeline_runs_score_like_haystacks_own_evaluators(
    dataset, tmp_path, tiny_bi_encoder_path, tiny_cross_encoder_path
):
    """A Haystack route (text embedder -> winnow retriever -> winnow ranker) scored by the report code, and
    Haystack's DocumentNDCGEvaluator / DocumentMRREvaluator agreeing with ir-measures on the same run.

    Definitions are made to match: relevance is binary (Haystack's ground-truth Documents carry no score, so
    it uses gain 1; the qrels are binarised for ir-measures), both read the same top-10 list in the same
    order (the report makes scores strictly decreasing in list order, so ir-measures' re-sort by score
    cannot reorder ties; this corpus has duplicate texts, hence tied scores), and no query has more than 10
    relevant documents (Haystack's IDCG runs over all relevant documents, while ir-measures' nDCG@10 cuts
    the ideal ranking at 10; with more than 10 relevant they would differ).
    """
    from haystack import Document, Pipeline
    from haystack.components.evaluators import DocumentMRREvaluator, DocumentNDCGEvaluator

    from winnow.rerank.ranker import WinnowRanker
    from winnow.retrieval.document_store import WinnowDocumentStore
    from winnow.retrieval.embedder_components import WinnowDocumentEmbedder, WinnowTextEmbedder
    from winnow.retrieval.embedding_retriever import WinnowEmbeddingRetriever

    doc_embedder = WinnowDocumentEmbedder(model=tiny_bi_encoder_path, progress_bar=False)
    docs = [Document(id=p.id, content=p.full_text()) for p in dataset.corpus]
    store = WinnowDocumentStore(index_path=str(tmp_path / "store"), embedder=doc_embedder.embedder_name)
    store.write_documents(doc_embedder.run(docs)["documents"])
    pipeline = Pipeline()
    pipeline.add_component("embedder", WinnowTextEmbedder(model=tiny_bi_encoder_path, progress_bar=False))
    pipeline.add_component("retriever", WinnowEmbeddingRetriever(document_store=store, top_k=11))
    pipeline.add_component("ranker", WinnowRanker(model=tiny_cross_encoder_path, top_k=11, scale_score=False))
    pipeline.connect("embedder.embedding", "retriever.query_embedding")
    pipeline.connect("retriever.documents", "ranker.documents")

    queries = dataset.split_queries("test")
    first_stage, rerank_scores = {}, {}
    for qid, text in queries.items():
        out = pipeline.run(
            {"embedder": {"text": text}, "ranker": {"query": text}}, include_outputs_from={"retriever"}
        )
        retrieved = [d for d in out["retriever"]["documents"] if d.id != qid][:10]  # arguana-style
        first_stage[qid] = [(d.id, float(d.score)) for d in retrieved]
        rerank_scores[qid] = {d.id: float(d.score) for d in out["ranker"]["documents"] if d.id != qid}
    # binary relevance (rel-q0 is graded 2 in the qrels): Haystack's ground truth has no grades
    binary = {q: {d: int(g >= 1) for d, g in dataset.qrels["test"][q].items()} for q in queries}
    assert all(sum(judged.values()) <= 10 for judged in binary.values())
    run = EvalRun(dataset.name, "test", queries, binary, [10], first_stage, rerank_scores, reranker_info={})
    report = build_report(run)  # the report code scores the Haystack runs
    assert report["queries"] == 12 and report["per_query"]["wins"] is not None

    truth = [[Document(id=d) for d, g in binary[q].items() if g] for q in queries]
    for stage in ("first_stage", "reranked"):
        lists = run.lists(stage, 10)
        retrieved = [[Document(id=d) for d, _ in lists[q][:10]] for q in queries]
        ndcg = DocumentNDCGEvaluator(document_comparison_field="id").run(truth, retrieved)
        mrr = DocumentMRREvaluator(document_comparison_field="id").run(truth, retrieved)
        ours = per_query_metrics(binary, as_run(lists), queries)
        assert ndcg["individual_scores"] == pytest.approx([ours["nDCG@10"][q] for q in queries], abs=1e-6)
        assert mrr["individual_scores"] == pytest.approx([ours["RR@10"][q] for q in queries], abs=1e-6)
        assert report["metrics"][stage]["nDCG@10"] == pytest.approx(ndcg["score"], abs=1e-6)
        assert report["metrics"][stage]["RR@10"] == pytest.approx(mrr["score"], abs=1e-6)
        assert 0 < mrr["score"] < 1
    values = report["per_query"]["values"]
    assert [values[q]["reranked"] for q in queries] == pytest.approx(ndcg["individual_scores"], abs=1e-6)


@pytest.mark.integration
def test_arguana_slice_drops_every_self_hit():
    """50 arguana queries with BM25 (no embedding): each query sits in the corpus under its own id."""
    from tests.conftest import dataset_or_skip

    data = load_beir(dataset_or_skip("arguana"))
    text_of = {p.id: p.full_text() for p in data.corpus}
    relevant = {
        data.queries[q]: {text_of[d] for d, g in judged.items() if g > 0}
        for q, judged in data.qrels["test"].items()
    }

    class PerQueryOracle:
        def score(self, query, documents):
            return np.array([float(d in relevant[query]) for d in documents])

    run = run_evaluation(data, "test", first_stage="bm25", reranker=PerQueryOracle(), max_queries=50)
    report = build_report(run)
    assert report["queries"] == 50 and run.self_hits_removed == 50
    assert 0.3 < report["metrics"]["first_stage"]["nDCG@10"] < 0.8  # BEIR BM25 on the full split: ~0.41-0.50
    # a perfect reranker is capped only by first-stage recall at depth 100
    assert report["metrics"]["reranked"]["R@100"] == report["metrics"]["first_stage"]["R@100"]
    assert report["metrics"]["reranked"]["P@1"] == pytest.approx(report["metrics"]["first_stage"]["R@100"])


def test_tie_broken_scores_keep_list_order_for_every_ir_measures_provider():
    from winnow.rerank.evaluation.runs import tie_broken

    ranked = tie_broken([("b", 1.0), ("a", 1.0), ("z", 1.0 - 1e-12), ("c", 0.5)])
    singles = [np.float32(s) for _, s in ranked]
    assert all(x > y for x, y in zip(singles, singles[1:], strict=False))
    assert ranked[0] == ("b", 1.0) and ranked[-1] == ("c", 0.5)
    # pytrec_eval (nDCG, P@1) breaks ties by descending id, the RR@10 provider by ascending id: with tied
    # raw scores they disagree; with tie-broken scores both read the list order
    measures = [ir_measures.P @ 1, ir_measures.RR @ 10, ir_measures.nDCG @ 10]
    for relevant in ("b", "a", "z"):
        qrels = {"q": {relevant: 1}}
        expected = 1 + [d for d, _ in ranked].index(relevant)
        scores = ir_measures.calc_aggregate(measures, qrels, as_run({"q": ranked}))
        assert scores[ir_measures.RR @ 10] == pytest.approx(1 / expected)
        assert scores[ir_measures.P @ 1] == float(expected == 1)


def test_queries_without_results_count_as_zero():
    from winnow.rerank.evaluation.measures import stage_metrics

    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    run = {"q1": {"a": 1.0, "x": 0.5}, "q2": {}}
    assert stage_metrics(qrels, run, ["q1", "q2"])["nDCG@10"] == pytest.approx(0.5)
    assert per_query_metrics(qrels, run, ["q1", "q2"])["RR@10"] == {"q1": 1.0, "q2": 0.0}
    report = build_report(
        EvalRun("d", "test", {"q1": "t", "q2": "u"}, qrels, [10], {"q1": [("a", 1.0)], "q2": []})
    )
    assert report["metrics"]["first_stage"]["P@1"] == 0.5
    assert any("no first-stage results" in w for w in report["warnings"])


def test_report_records_how_the_engine_ran(dataset, tiny_cross_encoder_path):
    from winnow.rerank.engine import CrossEncoderEngine

    engine = CrossEncoderEngine(tiny_cross_encoder_path, device="cpu", dtype="bf16", max_length=64).load()
    run, report = _report(dataset, engine, depths=[3])
    assert report["reranker"]["model"] == tiny_cross_encoder_path
    assert (report["reranker"]["backend"], report["reranker"]["dtype"]) == ("torch", "bfloat16")
    assert report["reranker"]["max_length"] == 64
    assert report["reranker"]["windows"] is True  # no card, no argument: windows
    _, plain = _report(dataset, RandomScorer(seed=1), depths=[3])
    assert "backend" not in plain["reranker"] and "dtype" not in plain["reranker"]
    assert "windows" not in plain["reranker"]


class RecordingScorer:
    """Scores documents by length and keeps every text it was given."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def score(self, query, documents):
        self.seen.extend(documents)
        return [float(len(d)) for d in documents]


def test_reranker_reads_the_text_alone_without_titles(dataset):
    import dataclasses

    titled = dataclasses.replace(
        dataset, corpus=[dataclasses.replace(p, title=f"debate {p.id}") for p in dataset.corpus]
    )
    texts = {p.text for p in titled.corpus}
    with_titles, without = RecordingScorer(), RecordingScorer()
    _, report = _report(titled, with_titles, depths=[5])
    _, bare = _report(titled, without, depths=[5], rerank_titles=False)
    assert report["reranker"]["titles"] is True and bare["reranker"]["titles"] is False
    assert with_titles.seen and all(doc.startswith("debate ") for doc in with_titles.seen)
    assert without.seen and all(doc in texts for doc in without.seen)


class _CardScorer(OracleScorer):
    """The oracle with a model card whose interpolation weight is 0 (a general model that helps nowhere)."""

    model_name = "general"
    card = {"interpolation": {"weight": 0.0, "split": "scifact/train, tatqa/dev"}}

    @property
    def interpolation_weight(self):
        return self.card["interpolation"]["weight"]


def test_a_card_at_weight_zero_is_evaluated_as_users_get_it_without_running_the_model(dataset, tmp_path):
    scorer = _CardScorer(dataset)
    run, report = _report(dataset, scorer)
    assert scorer.calls == 0 and not run.reranked and run.first_stage_only
    assert report["reranker"]["first_stage_only"] == run.first_stage_only
    assert report["interpolation"] == {
        "weight": 0.0,
        "source": "model card",
        "first_stage_only": run.first_stage_only,
    }
    assert report["metrics"]["interpolated"] == report["metrics"]["first_stage"]
    assert report["lift_interpolated"]["nDCG@10"] == 0.0
    assert report["significance_interpolated"]["nDCG@10"]["p_value"] == 1.0
    assert report["metrics"]["reranked"] is None and report["lift"] is None
    assert any("not run" in w for w in report["warnings"])
    write_report(report, tmp_path / "r.json")  # Markdown and plot cope with it
    assert "first" in (tmp_path / "r.md").read_text()
    # a weight passed in runs the model, as everywhere
    run, report = _report(dataset, _CardScorer(dataset), interpolation_weight=0.5)
    assert run.reranked and report["lift"]["nDCG@10"] > 0
