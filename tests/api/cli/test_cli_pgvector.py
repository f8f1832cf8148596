"""``winnow index/search/eval --store postgresql://...`` end to end against the bundled PostgreSQL + pgvector
(``tests/postgres_server.py``), parity with the FAISS path, and the DSN's password in no output or log."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path

import pytest

from tests.conftest import dataset_or_skip
from winnow.api.cli import main

SAMPLE = Path(__file__).resolve().parents[3] / "retrieval" / "sample_data"


def _run_json(capsys, argv: list[str]) -> dict:
    assert main(argv) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def _assert_no_password(password: str, capsys, caplog, *texts: str) -> None:
    captured = capsys.readouterr()
    seen = [captured.out, captured.err, *texts, *(r.getMessage() for r in caplog.records)]
    seen += [str(r.exc_info[1]) for r in caplog.records if r.exc_info]
    assert not [t for t in seen if password in t]


def test_index_search_eval_over_postgres(postgres_server, tiny_bi_encoder_path, tmp_path, capsys, caplog):
    """index, search --json (dense, hybrid, bm25), eval over the sample corpus all succeed, and the password
    shows up in no output, log line or report file."""
    caplog.set_level(logging.DEBUG)
    uri = postgres_server.uri("cli_" + uuid.uuid4().hex[:8])
    index = ["index", "--corpus", str(SAMPLE), "--store", uri, "--embedder", tiny_bi_encoder_path, "--json"]
    summary = _run_json(capsys, index)
    assert summary["store"] == "pgvector" and summary["stored_documents"] == summary["documents"] > 200
    assert "***" in summary["index"]

    query = "what causes rain"
    for first_stage, where in (("hybrid", uri), ("bm25", uri), ("hybrid", uri + "&lexical=postgres")):
        out = _run_json(capsys, ["search", "--store", where, "--first-stage", first_stage, "--json", query])
        assert out["results"] and len(out["results"]) <= 10, first_stage
    dense = _run_json(capsys, ["search", "--store", uri, "--json", "--top-k", "5", query])["results"]
    assert len(dense) == 5 and [r["dense_rank"] for r in dense] == [1, 2, 3, 4, 5]

    out = str(tmp_path / "pg.json")
    report = _run_json(capsys, ["eval", "--dataset", str(SAMPLE), "--store", uri, "--out", out, "--json"])
    assert report["first_stage"]["store"] == "pgvector" and "***" in report["first_stage"]["index"]
    assert report["metrics"]["first_stage"]["nDCG@10"] > 0
    files = [p.read_text(errors="replace") for p in tmp_path.glob("pg.*") if p.suffix in (".json", ".md")]
    _assert_no_password(postgres_server.password, capsys, caplog, *files)


def test_index_rerun_upserts(postgres_server, tiny_bi_encoder_path, tmp_path, capsys):
    corpus = tmp_path / "docs.jsonl"
    rows = [{"_id": f"d{i}", "title": f"T{i}", "text": f"document number {i}"} for i in range(3)]
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    uri = postgres_server.uri("rerun_" + uuid.uuid4().hex[:8])
    argv = ["index", "--corpus", str(corpus), "--store", uri, "--embedder", tiny_bi_encoder_path, "--json"]
    assert _run_json(capsys, argv)["stored_documents"] == 3
    rows[0]["text"] = "changed text"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert _run_json(capsys, argv)["stored_documents"] == 3  # overwritten by id, not duplicated
    from winnow.retrieval.store_uri import open_document_store

    store = open_document_store(uri, create=False)
    try:
        assert (
            store.filter_documents({"field": "id", "operator": "==", "value": "d0"})[0].content
            == "changed text"
        )
    finally:
        store.close()


def test_errors_name_the_store_without_its_password(postgres_server, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = postgres_server.dsn.replace(postgres_server.password, postgres_server.password + "-wrong")
    assert main(["search", "--store", wrong, "--json", "anything"]) == 2
    err = capsys.readouterr().err
    assert "password authentication failed" in err and "***" in err
    assert main(["search", "--store", postgres_server.uri("no_such_table"), "anything"]) == 2
    assert "no table 'no_such_table'" in capsys.readouterr().err
    _assert_no_password(postgres_server.password, capsys, caplog, err)


def test_index_refuses_what_postgres_does_not_take(postgres_server, capsys):
    for extra in (["--chunk-words", "50"], ["--factory", "IVF4096,SQ8"]):
        assert (
            main(["index", "--corpus", str(SAMPLE), "--store", postgres_server.uri("refused"), *extra]) == 2
        )
        assert "--store postgresql://" in capsys.readouterr().err


def _scifact_slice(root: Path, *, queries: int = 12, extra_docs: int = 80) -> Path:
    """A small BEIR folder from SciFact's test split: ``queries`` queries, their relevant documents and
    ``extra_docs`` others."""
    source = dataset_or_skip("scifact")
    rows = (source / "qrels" / "test.tsv").read_text().splitlines()[1:]
    qrels: dict[str, list[tuple[str, str]]] = {}
    for row in rows:
        qid, doc, score = row.split("\t")
        qrels.setdefault(qid, []).append((doc, score))
    chosen = list(qrels)[:queries]
    relevant = {doc for q in chosen for doc, _ in qrels[q]}
    corpus = []
    with (source / "corpus.jsonl").open() as f:
        for line in f:
            doc = json.loads(line)
            if doc["_id"] in relevant or len(corpus) < extra_docs + len(relevant):
                corpus.append(line)
    all_queries = {json.loads(line)["_id"]: line for line in (source / "queries.jsonl").open()}
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("".join(corpus))
    (root / "queries.jsonl").write_text("".join(all_queries[q] for q in chosen))
    (root / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q in chosen for d, s in qrels[q])
    )
    return root


def _scifact_parity(postgres_server, embedder: str, tmp_path: Path, capsys) -> tuple[float, float]:
    data = _scifact_slice(tmp_path / "scifact")
    uri = postgres_server.uri("scifact_" + uuid.uuid4().hex[:8])
    _run_json(capsys, ["index", "--corpus", str(data), "--store", uri, "--embedder", embedder, "--json"])
    _run_json(
        capsys,
        ["index", "--corpus", str(data), "--out", str(tmp_path / "idx"), "--embedder", embedder, "--json"],
    )
    ndcg = []
    for where in (["--store", uri], ["--index", str(tmp_path / "idx")]):
        report = _run_json(
            capsys,
            [
                "eval",
                "--dataset",
                str(data),
                *where,
                "--out",
                str(tmp_path / f"{where[0][2:]}.json"),
                "--json",
            ],
        )
        ndcg.append(report["metrics"]["first_stage"]["nDCG@10"])
    return ndcg[0], ndcg[1]


def test_scifact_slice_dense_ndcg_matches_faiss(postgres_server, tiny_bi_encoder_path, tmp_path, capsys):
    pg, faiss = _scifact_parity(postgres_server, tiny_bi_encoder_path, tmp_path, capsys)
    assert abs(pg - faiss) <= 0.01


@pytest.mark.slow
@pytest.mark.integration
def test_scifact_slice_dense_ndcg_matches_faiss_with_minilm(postgres_server, tmp_path, capsys):
    """The acceptance check with the packaged MiniLM (slow on 2 CPU cores)."""
    pg, faiss = _scifact_parity(postgres_server, "all-MiniLM-L6-v2", tmp_path, capsys)
    assert faiss > 0.3 and abs(pg - faiss) <= 0.01
