"""Issue 22, item 1: bounded cost per request (filter size caps, matching errors as 422s, capped fields)."""

from __future__ import annotations

import json
import time

from fastapi.testclient import TestClient

from winnow.api.app import create_app

YEAR = "meta.year"


def _error(response, status: int, *needles: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == body["message"]
    for needle in needles:
        assert needle in body["message"], body["message"]
    return body["message"]


def test_one_megabyte_in_list_gets_its_422_at_once(client):
    values = list(range(1_000_000, 1_200_000))  # about 1.6 MB of JSON in one 'in' list
    body = {"query": "revenue", "filters": {"field": YEAR, "operator": "in", "value": values}}
    raw = json.dumps(body).encode()
    assert len(raw) > 1_000_000
    client.post("/search", json={"query": "warm up", "rerank": False})
    start = time.perf_counter()
    r = client.post("/search", content=raw, headers={"content-type": "application/json"})
    elapsed = time.perf_counter() - start
    _error(r, 422, "1024", "WINNOW_MAX_FILTER_IN_VALUES")
    assert elapsed < 1.0, elapsed  # about 30 ms here; the bound is loose for slow CI machines


def test_in_values_are_counted_across_the_whole_filter(make_settings):
    with TestClient(create_app(make_settings(max_filter_in_values=10))) as c:
        six = {"field": YEAR, "operator": "in", "value": list(range(6))}
        ok = c.post("/search", json={"query": "x", "rerank": False, "filters": six})
        assert ok.status_code == 200, ok.text
        both = {"operator": "OR", "conditions": [six, {**six, "operator": "not in"}]}
        _error(c.post("/search", json={"query": "x", "filters": both}), 422, "10", "MAX_FILTER_IN_VALUES")
        nested = {"field": YEAR, "operator": "==", "value": [[1] * 6, [2] * 6]}
        _error(c.post("/search", json={"query": "x", "filters": nested}), 422, "limit is 10")


def test_filter_node_cap(client, make_settings):
    cond = {"field": YEAR, "operator": "==", "value": 2021}
    many = {"operator": "OR", "conditions": [cond] * 300}
    r = client.post("/search", json={"query": "x", "filters": many})
    _error(r, 422, "256", "WINNOW_MAX_FILTER_NODES")
    with TestClient(create_app(make_settings(max_filter_nodes=4))) as c:
        three = {"operator": "AND", "conditions": [cond] * 3}  # 4 nodes: the AND and three conditions
        assert c.post("/search", json={"query": "x", "rerank": False, "filters": three}).status_code == 200
        deep = {"operator": "NOT", "conditions": [{"operator": "AND", "conditions": [cond] * 3}]}
        _error(c.post("/search", json={"query": "x", "filters": deep}), 422, "limit is 4")


def test_ordering_on_an_incomparable_value_is_a_422(client):
    doc = {"id": "tagged", "text": "tagged document", "meta": {"tags": ["a", "b"], "year": 2024}}
    assert client.put("/documents", json={"documents": [doc]}).status_code == 200
    for op in (">", ">=", "<", "<="):
        on_list = {"field": "meta.tags", "operator": op, "value": 1}
        _error(client.post("/search", json={"query": "x", "filters": on_list}), 422, "filters", "tagged")
    against_object = {"field": YEAR, "operator": ">", "value": {"a": 1}}
    _error(client.post("/search", json={"query": "x", "filters": against_object}), 422, "filters")
    not_a_date = {"field": YEAR, "operator": ">", "value": "x" * 100_000}
    _error(client.post("/search", json={"query": "x", "filters": not_a_date}), 422, "dates")
    overflow = {"field": YEAR, "operator": "<", "value": "99999999999999999999"}
    _error(client.post("/search", json={"query": "x", "filters": overflow}), 422, "filters")


def test_a_filter_over_its_time_budget_is_a_422(make_settings, monkeypatch):
    import winnow.retrieval.metadata_filter as metadata_filter

    clock = iter(float(i) for i in range(10**6))
    monkeypatch.setattr(metadata_filter, "_clock", lambda: next(clock))
    monkeypatch.setattr(metadata_filter, "_DEADLINE_EVERY", 1)
    with TestClient(create_app(make_settings(max_filter_seconds=0.5)), raise_server_exceptions=False) as c:
        filters = {"field": YEAR, "operator": ">", "value": 2000}
        _error(c.post("/search", json={"query": "x", "filters": filters}), 422, "0.5 s")


def test_document_titles_are_capped(make_settings):
    with TestClient(create_app(make_settings(max_document_chars=50))) as c:
        doc = {"id": "t", "text": "short", "title": "t" * 51}
        _error(c.put("/documents", json={"documents": [doc]}), 413, "documents[0].title", "50")
