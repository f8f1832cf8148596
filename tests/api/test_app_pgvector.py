"""``winnow serve`` over PostgreSQL + pgvector (``WINNOW_STORE``), against the bundled server: writes go
through to the database, filters (NOT included) run in SQL, concurrent searches use separate connections,
and the DSN's password appears in no response, metric or log line."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import DOCS
from winnow.api.app import create_app
from winnow.api.settings import load_settings
from winnow.retrieval.pgvector_store import WinnowPgvectorDocumentStore
from winnow.retrieval.store_uri import open_document_store

BODY = {
    "documents": [{"id": p.id, "text": p.text, "title": p.title, "meta": p.meta} for p in DOCS],
}


@pytest.fixture()
def store_uri(postgres_server) -> Iterator[str]:
    uri = postgres_server.uri("serve_" + uuid.uuid4().hex[:8])
    yield uri
    store = open_document_store(uri, embedding_dim=32)
    store.delete_table()
    store.close()


@pytest.fixture()
def pg_client(store_uri, tiny_bi_encoder_path, tiny_cross_encoder_path) -> Iterator[TestClient]:
    settings = load_settings(
        store=store_uri,
        embedder=tiny_bi_encoder_path,
        reranker=tiny_cross_encoder_path,
        device="cpu",
        batch_wait_ms=2.0,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        response = client.put("/documents", json=BODY)
        assert response.status_code == 200, response.text
        yield client


def _ids(response) -> set[str]:
    assert response.status_code == 200, response.text
    return {hit["id"] for hit in response.json()["results"]}


def test_writes_go_through_to_the_database(pg_client, store_uri) -> None:
    other = open_document_store(store_uri, embedding_dim=32)  # another replica's view: the database itself
    try:
        assert other.count_documents() == 5
        assert pg_client.put("/documents", json=BODY).json()["documents"] == 5  # upsert: no duplicates
        doc = pg_client.get("/documents/fin-1").json()
        assert doc == {"id": "fin-1", "text": DOCS[0].text, "title": "Northwind 10-K", "meta": {"year": 2021}}
        assert pg_client.delete("/documents/bio-2").status_code == 200
        assert pg_client.get("/documents/bio-2").status_code == 404
        assert pg_client.delete("/documents/bio-2").status_code == 404
        assert other.count_documents() == 4
        assert pg_client.get("/ready").json()["documents"] == 4
    finally:
        other.close()


def test_search_every_first_stage(pg_client) -> None:
    for first_stage in ("dense", "bm25", "hybrid"):
        body = {"query": "revenue billion", "top_k": 3, "rerank": False, "first_stage": first_stage}
        response = pg_client.post("/search", json=body)
        assert response.status_code == 200, response.text
        assert response.json()["first_stage"] == first_stage and response.json()["results"]
    lexical = pg_client.post("/search", json={"query": "revenue", "first_stage": "bm25", "rerank": False})
    assert [h["id"] for h in lexical.json()["results"]] == ["fin-1"]
    reranked = pg_client.post("/search", json={"query": "revenue billion", "top_k": 3})
    assert reranked.status_code == 200 and reranked.json()["reranked"] is True
    assert reranked.json()["first_stage"] == "dense"  # full text fused in scored below dense: not the default


def test_serve_refuses_an_in_memory_lexical_side(store_uri) -> None:
    with pytest.raises(ValueError, match="lexical=bm25s is for the command line"):
        create_app(load_settings(store=store_uri + "&lexical=bm25s", reranker="none"))


def test_filters_run_in_sql_and_not_is_exact(pg_client) -> None:
    def search(filters: dict, first_stage: str = "hybrid") -> set[str]:
        body = {"query": "protein revenue", "top_k": 10, "rerank": False, "filters": filters}
        return _ids(pg_client.post("/search", json={**body, "first_stage": first_stage}))

    not_fact = {"operator": "NOT", "conditions": [{"field": "meta.kind", "operator": "==", "value": "fact"}]}
    assert search(not_fact, "dense") == {"fin-1", "fin-2", "bio-1", "bio-2"}  # no `kind`: kept
    not_recent = {"operator": "NOT", "conditions": [{"field": "meta.year", "operator": ">", "value": 2019}]}
    assert search(not_recent, "dense") == {"fin-2", "bio-1"}
    assert search({"field": "meta.year", "operator": "==", "value": 2021}) <= {"fin-1", "fact-1"}
    bad = pg_client.post(
        "/search", json={"query": "x", "filters": {"field": "meta.year", "operator": "~", "value": 1}}
    )
    assert bad.status_code == 422


def test_concurrent_searches_do_not_share_a_connection(pg_client, monkeypatch) -> None:
    """Structural: four /search requests must all be inside the database query at once (a barrier only
    they can release) and report four different PostgreSQL backends. Serialised on one connection, the
    barrier would time out and the requests fail."""
    clients = 4
    barrier = threading.Barrier(clients, timeout=30)
    backends: list[int] = []
    original = WinnowPgvectorDocumentStore._embedding_retrieval

    def retrieval(self, *args, **kwargs):
        backends.append(self.connection_pid())
        barrier.wait()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(WinnowPgvectorDocumentStore, "_embedding_retrieval", retrieval)
    body = {"query": "protein", "top_k": 2, "rerank": False, "first_stage": "dense"}
    with ThreadPoolExecutor(clients) as pool:
        responses = list(pool.map(lambda _: pg_client.post("/search", json=body), range(clients)))
    assert [r.status_code for r in responses] == [200] * clients
    assert len(set(backends)) == clients


def test_password_in_no_response_metric_or_log(postgres_server, pg_client, store_uri, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    password = postgres_server.password
    texts = [
        pg_client.get("/metrics").text,
        pg_client.get("/ready").text,
        pg_client.get("/openapi.json").text,
        pg_client.post("/search", json={"query": "revenue"}).text,
        repr(pg_client.app.state.settings),
        str(pg_client.app.state.settings.model_dump()),
    ]
    wrong = store_uri.replace(password, password + "-wrong")
    app = create_app(load_settings(store=wrong, reranker="none", device="cpu"))
    with pytest.raises(Exception) as failed, TestClient(app):  # noqa: B017 - any startup error, redacted
        pass
    texts.append(str(failed.value))
    texts += [r.getMessage() for r in caplog.records]
    assert "password authentication failed" in str(failed.value)
    assert not [t for t in texts if password in t]
