"""The REST service loads the BM25 saved with its index instead of rebuilding it, and its snapshots save a
current one (after writes, or for an index saved before BM25 lived with it)."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from winnow.api.app import create_app
from winnow.indexes import WinnowIndex, read_manifest
from winnow.retrieval.bm25_index import BM25_FOLDER, bm25_for_index, keep_bm25


def _bm25_ids(client: TestClient, query: str) -> list[str]:
    r = client.post("/search", json={"query": query, "first_stage": "bm25", "rerank": False})
    assert r.status_code == 200, r.text
    return [h["id"] for h in r.json()["results"]]


def test_service_loads_saved_bm25_and_snapshots_a_current_one(
    index_copy: Path, make_settings, bm25_builds: list[int]
) -> None:
    keep_bm25(WinnowIndex.load(index_copy)).save(index_copy)
    bm25_builds.clear()
    with TestClient(create_app(make_settings(reranker="none"))) as client:
        assert _bm25_ids(client, "revenue billion dollars")[0] == "fin-1"
        assert bm25_builds == []  # loaded from INDEX/bm25, not rebuilt
        doc = {"id": "new-1", "text": "the zorblaxitude of dividends"}
        assert client.put("/documents", json={"documents": [doc]}).status_code == 200
        assert _bm25_ids(client, "zorblaxitude") == ["new-1"] and len(bm25_builds) == 1
        assert client.app.state.service.snapshot(force=True)
    bm25_builds.clear()
    reloaded = bm25_for_index(WinnowIndex.load(index_copy))
    assert [h.id for h in reloaded.retrieve("zorblaxitude", 1)] == ["new-1"] and bm25_builds == []


def test_service_saves_bm25_for_an_index_without_it(
    index_copy: Path, make_settings, bm25_builds: list[int]
) -> None:
    assert BM25_FOLDER not in (read_manifest(index_copy).attachments or {})
    with TestClient(create_app(make_settings(reranker="none"))) as client:
        assert _bm25_ids(client, "revenue billion dollars")[0] == "fin-1" and len(bm25_builds) == 1
        assert client.app.state.service.snapshot(force=True)
    assert BM25_FOLDER in read_manifest(index_copy).attachments and len(bm25_builds) == 1
