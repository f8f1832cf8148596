"""`POST /search`'s first stages (dense, bm25, hybrid): the CLI's ranking, BM25 fresh after writes, ranks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from winnow.api.app import create_app
from winnow.api.cli import main

QUERIES = ["revenue billion dollars", "gene expression in plants", "vaccines chips claim"]


def _search(client: TestClient, **body) -> dict:
    r = client.post("/search", json={"top_k": 10, "rerank": False, **body})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("query", QUERIES)
def test_hybrid_search_matches_the_cli(client, served_index: Path, capsys, query: str) -> None:
    # the app serves a copy of served_index; the CLI searches the original
    assert (
        main(
            [
                "search",
                "--index",
                str(served_index),
                "--first-stage",
                "hybrid",
                "--top-k",
                "10",
                "--json",
                query,
            ]
        )
        == 0
    )
    cli = json.loads(capsys.readouterr().out)
    rest = _search(client, query=query, first_stage="hybrid")
    assert rest["first_stage"] == "hybrid"
    assert [h["id"] for h in rest["results"]] == [h["id"] for h in cli["results"]]
    for got, want in zip(rest["results"], cli["results"], strict=True):
        assert got["score"] == pytest.approx(want["score"])
        assert (got["dense_rank"], got["bm25_rank"]) == (want["dense_rank"], want["bm25_rank"])


def test_default_first_stage_is_hybrid_and_reported(client) -> None:
    default = _search(client, query="revenue billion dollars")
    assert default["first_stage"] == "hybrid"
    explicit = _search(client, query="revenue billion dollars", first_stage="hybrid")
    assert [h["id"] for h in default["results"]] == [h["id"] for h in explicit["results"]]
    assert _search(client, query="revenue", first_stage=None)["first_stage"] == "hybrid"


@pytest.mark.parametrize("bad", ["sparse", "Dense", "", 1, ["dense"]])
def test_bad_first_stage_is_422(client, bad) -> None:
    r = client.post("/search", json={"query": "revenue", "first_stage": bad})
    assert r.status_code == 422, r.text
    assert "first_stage" in r.text


def test_openapi_documents_first_stage(client) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    prop = schemas["SearchRequest"]["properties"]["first_stage"]
    assert {"dense", "bm25", "hybrid"} <= set(json.dumps(prop).replace('"', " ").split())
    assert "hybrid" in prop["description"] and "Default" in prop["description"]
    assert {"dense_rank", "bm25_rank"} <= set(schemas["SearchHit"]["properties"])


def test_hits_carry_their_dense_and_bm25_ranks(client) -> None:
    query = "revenue billion dollars"
    dense = _search(client, query=query, first_stage="dense")["results"]
    bm25 = _search(client, query=query, first_stage="bm25")["results"]
    assert all(h["dense_rank"] == h["first_stage_rank"] and h["bm25_rank"] is None for h in dense)
    assert all(h["bm25_rank"] == h["first_stage_rank"] and h["dense_rank"] is None for h in bm25)
    dense_ranks = {h["id"]: h["first_stage_rank"] for h in dense}
    bm25_ranks = {h["id"]: h["first_stage_rank"] for h in bm25}
    for hit in _search(client, query=query, first_stage="hybrid")["results"]:
        assert hit["dense_rank"] == dense_ranks.get(hit["id"])
        assert hit["bm25_rank"] == bm25_ranks.get(hit["id"])
        assert hit["dense_rank"] is not None or hit["bm25_rank"] is not None
    reranked = client.post("/search", json={"query": query, "first_stage": "hybrid"}).json()
    assert reranked["reranked"] is True
    assert all(h["dense_rank"] == dense_ranks.get(h["id"]) for h in reranked["results"])


def test_bm25_sees_acknowledged_writes(client) -> None:
    word = "zorblaxitude"
    assert _search(client, query=word, first_stage="bm25")["results"] == []  # builds BM25 before the write
    doc = {
        "id": "new-1",
        "title": "Fabrikam",
        "text": f"the {word} of quarterly dividends",
        "meta": {"year": 2024},
    }
    assert client.put("/documents", json={"documents": [doc]}).status_code == 200
    hits = _search(client, query=word, first_stage="bm25")["results"]
    assert hits[0]["id"] == "new-1" and hits[0]["bm25_rank"] == 1
    assert _search(client, query=word, first_stage="hybrid")["results"][0]["id"] == "new-1"
    replaced = {**doc, "text": "quarterly dividends unchanged"}
    assert client.put("/documents", json={"documents": [replaced]}).status_code == 200
    assert _search(client, query=word, first_stage="bm25")["results"] == []
    assert client.put("/documents", json={"documents": [doc]}).status_code == 200
    assert _search(client, query=word, first_stage="bm25")["results"][0]["id"] == "new-1"
    assert client.delete("/documents/new-1").json()["deleted"] is True
    assert _search(client, query=word, first_stage="bm25")["results"] == []
    assert "new-1" not in [h["id"] for h in _search(client, query=word, first_stage="hybrid")["results"]]


def test_bm25_is_not_rebuilt_without_writes(client) -> None:
    service = client.app.state.service
    _search(client, query="revenue", first_stage="bm25")
    built = service._lexical_searchers["bm25"].first_stage  # the BM25 retriever the last rebuild made
    assert built is not None
    _search(client, query="gene", first_stage="hybrid")
    _search(client, query="chips", first_stage="bm25")
    assert service._lexical_searchers["bm25"].first_stage is built


@pytest.mark.parametrize("first_stage", ["dense", "bm25", "hybrid"])
def test_filters_restrict_every_first_stage(client, first_stage: str) -> None:
    flt = {"field": "meta.year", "operator": ">=", "value": 2020}
    for query in QUERIES:
        hits = _search(client, query=query, first_stage=first_stage, filters=flt)["results"]
        assert {h["id"] for h in hits} <= {"fin-1", "fact-1", "bio-2"}
    hits = _search(client, query="revenue billion dollars", first_stage=first_stage, filters=flt)["results"]
    assert "fin-1" in [h["id"] for h in hits]
    none = {"field": "meta.year", "operator": ">", "value": 3000}
    assert _search(client, query="revenue", first_stage=first_stage, filters=none)["results"] == []


def test_empty_index_defaults_to_dense(tmp_path, make_settings, tiny_bi_encoder_path: str) -> None:
    settings = make_settings(index=tmp_path / "empty", embedder=tiny_bi_encoder_path, reranker="none")
    with TestClient(create_app(settings)) as c:
        assert _search(c, query="anything")["first_stage"] == "dense"
        for kind in ("bm25", "hybrid"):
            assert _search(c, query="anything", first_stage=kind)["results"] == []
        doc = {"id": "d1", "text": "a lonely quokka"}
        assert c.put("/documents", json={"documents": [doc]}).status_code == 200
        body = _search(c, query="quokka")
        assert body["first_stage"] == "hybrid" and body["results"][0]["id"] == "d1"
