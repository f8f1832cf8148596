"""Every route of the REST service, with good input and with bad input (4xx with a JSON error, never 5xx)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from winnow.api.app import create_app
from winnow.rerank.engine import CrossEncoderEngine


def _error(response, status: int, *words: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"error", "error_type", "message"}, body
    for word in words:
        assert word in body["message"], (word, body["message"])
    return body


# ---------------------------------------------------------------------- health
def test_health_ready_and_docs(client):
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready").json()
    assert ready["status"] == "ready" and ready["documents"] == 5 and ready["vectors"] == 5
    assert ready["reranker"] is not None
    schema = client.get("/openapi.json").json()
    for path in (
        "/search",
        "/v2/rerank",
        "/rerank",
        "/documents",
        "/documents/{doc_id}",
        "/health",
        "/ready",
    ):
        assert path in schema["paths"], path
    body = schema["paths"]["/search"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["$ref"].endswith("SearchRequest")
    assert schema["components"]["schemas"]["SearchRequest"]["examples"]
    assert client.get("/docs").status_code == 200


# ---------------------------------------------------------------------- search
def test_search_reranks_candidates(client, tiny_cross_encoder_path):
    r = client.post("/search", json={"query": "revenue billion dollars", "top_k": 3, "candidates": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["reranked"] is True and len(body["results"]) == 3
    assert [h["rank"] for h in body["results"]] == [1, 2, 3]
    assert set(body["timings_ms"]) >= {"first_stage", "rerank", "total"}
    # the order is the cross-encoder's: check against the engine directly
    first = client.post(
        "/search", json={"query": "revenue billion dollars", "top_k": 5, "rerank": False}
    ).json()
    texts = [(h["title"] + ". " + h["text"]) if h["title"] else h["text"] for h in first["results"]]
    engine = CrossEncoderEngine(tiny_cross_encoder_path, device="cpu")
    scores = engine.score("revenue billion dollars", texts)
    expected = [first["results"][i]["id"] for i in np.argsort(-scores, kind="stable")[:3]]
    assert [h["id"] for h in body["results"]] == expected
    assert body["results"][0]["score"] == pytest.approx(float(scores.max()), abs=1e-4)


def test_search_first_stage_only_and_filters(client):
    r = client.post("/search", json={"query": "gene expression", "top_k": 5, "rerank": False})
    body = r.json()
    assert body["reranked"] is False and body["reranker"] is None
    scores = [h["score"] for h in body["results"]]
    assert scores == sorted(scores, reverse=True)
    flt = {"field": "meta.year", "operator": ">=", "value": 2020}
    r = client.post("/search", json={"query": "gene expression", "top_k": 5, "filters": flt})
    ids = {h["id"] for h in r.json()["results"]}
    assert ids == {"fin-1", "fact-1", "bio-2"}
    nested = {
        "operator": "AND",
        "conditions": [flt, {"field": "meta.kind", "operator": "==", "value": "fact"}],
    }
    assert [
        h["id"] for h in client.post("/search", json={"query": "x", "filters": nested}).json()["results"]
    ] == ["fact-1"]
    none = {"field": "meta.year", "operator": ">", "value": 3000}
    assert client.post("/search", json={"query": "x", "filters": none}).json()["results"] == []


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"query": ""}, 422, ["query"]),
        ({"query": "   "}, 422, ["query", "whitespace"]),
        ({}, 422, ["query", "required"]),
        ({"query": 12}, 422, ["query"]),
        ({"query": "x", "top_k": "ten"}, 422, ["top_k"]),
        ({"query": "x", "top_k": 0}, 422, ["top_k"]),
        ({"query": "x", "top_k": 100000}, 422, ["top_k", "limit"]),
        ({"query": "x", "candidates": -1}, 422, ["candidates"]),
        ({"query": "x", "topk": 3}, 422, ["topk"]),
        ({"query": "x", "filters": {"field": "meta.year"}}, 422, ["filters", "operator"]),
        ({"query": "x", "filters": {"year": 2020}}, 422, ["filters"]),
        ({"query": "x", "filters": {"field": "meta.y", "operator": "~", "value": 1}}, 422, ["operator"]),
        ({"query": "x" * 5000}, 413, ["query", "limit"]),
    ],
)
def test_search_bad_input(client, body, status, words):
    _error(client.post("/search", json=body), status, *words)


def test_search_filter_type_mismatch_is_4xx(client):
    flt = {"field": "meta.kind", "operator": ">", "value": 3}  # 'fact' > 3 cannot be compared
    r = client.post("/search", json={"query": "x", "filters": flt})
    assert r.status_code in (200, 422), r.text


# ---------------------------------------------------------------------- raw bodies
@pytest.mark.parametrize(
    "raw",
    [
        b'{"query": "caf\xe9"}',  # latin-1, not UTF-8
        b"\xff\xfe\x00garbage",
        b'{"query": "x", "top_k": NaN}',
        b'{"query": NaN}',
        b'{"query": "x",',
        b"[1, 2, 3]",
        b'{"query": "\\ud800"}',  # a lone surrogate
    ],
)
@pytest.mark.parametrize("route", ["/search", "/v2/rerank", "/rerank", "/documents"])
def test_malformed_bodies_get_4xx(client, raw, route):
    method = client.put if route == "/documents" else client.post
    r = method(route, content=raw, headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500, (route, raw, r.status_code, r.text)
    assert "error" in r.json()


def test_unknown_route_and_method(client):
    _error(client.get("/nope"), 404, "/nope")
    _error(client.get("/search"), 405, "GET")


# ---------------------------------------------------------------------- /v2/rerank (Cohere)
DOCS3 = ["the cat sat on the mat", "revenue grew to 4 billion", "a protein folds"]


def test_cohere_rerank(client, tiny_cross_encoder_path):
    r = client.post(
        "/v2/rerank", json={"model": "anything", "query": "revenue", "documents": DOCS3, "top_n": 2}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] and body["meta"]["api_version"]["version"] == "2"
    logits = CrossEncoderEngine(tiny_cross_encoder_path, device="cpu").score("revenue", DOCS3)
    order = np.argsort(-logits, kind="stable")
    assert [x["index"] for x in body["results"]] == order[:2].tolist()
    expected = 1 / (1 + np.exp(-logits[order[0]]))
    assert body["results"][0]["relevance_score"] == pytest.approx(expected, abs=1e-5)
    assert all(0 <= x["relevance_score"] <= 1 for x in body["results"])
    # v1-style document objects, return_documents, and unknown newer fields are accepted
    r = client.post(
        "/v2/rerank",
        json={
            "query": "revenue",
            "documents": [{"text": d} for d in DOCS3],
            "return_documents": True,
            "priority": 0,
        },
    )
    assert [x["document"]["text"] for x in r.json()["results"]] == [DOCS3[i] for i in order]


def test_cohere_top_n_larger_than_documents(client, make_settings):
    body = {"query": "revenue", "documents": DOCS3, "top_n": 10}
    r = client.post("/v2/rerank", json=body)
    assert r.status_code == 200 and len(r.json()["results"]) == 3  # as Cohere (and its clients) expect
    with TestClient(create_app(make_settings(strict_top_n=True))) as strict:
        _error(strict.post("/v2/rerank", json=body), 422, "top_n", "10", "3")


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"query": "x", "documents": []}, 422, ["documents"]),
        ({"query": "", "documents": ["a"]}, 422, ["query"]),
        ({"documents": ["a"]}, 422, ["query", "required"]),
        ({"query": "x"}, 422, ["documents", "required"]),
        ({"query": "x", "documents": "abc"}, 422, ["documents"]),
        ({"query": "x", "documents": [1, 2]}, 422, ["documents"]),
        ({"query": "x", "documents": ["a"], "top_n": 0}, 422, ["top_n"]),
        ({"query": "x", "documents": ["a"] * 10_000}, 422, ["10000", "limit"]),
        ({"query": "x", "documents": ["word " * 200_000]}, 413, ["documents[0]", "limit"]),
    ],
)
def test_cohere_bad_input(client, body, status, words):
    _error(client.post("/v2/rerank", json=body), status, *words)


# ---------------------------------------------------------------------- /rerank (TEI)
def test_tei_rerank(client, tiny_cross_encoder_path):
    r = client.post("/rerank", json={"query": "revenue", "texts": DOCS3, "return_text": True})
    assert r.status_code == 200, r.text
    body = r.json()
    logits = CrossEncoderEngine(tiny_cross_encoder_path, device="cpu").score("revenue", DOCS3)
    assert [x["index"] for x in body] == np.argsort(-logits, kind="stable").tolist()
    assert body[0]["text"] == DOCS3[body[0]["index"]]
    assert all(0 <= x["score"] <= 1 for x in body)
    raw = client.post("/rerank", json={"query": "revenue", "texts": DOCS3, "raw_scores": True}).json()
    assert raw[0]["score"] == pytest.approx(float(logits.max()), abs=1e-4) and "text" not in raw[0]


def test_tei_long_text_rejected_unless_truncate(client):
    long_doc = "word " * 200_000  # 1 MB
    _error(client.post("/rerank", json={"query": "q", "texts": [long_doc]}), 413, "texts[0]", "truncate")
    r = client.post("/rerank", json={"query": "q", "texts": [long_doc, "b"], "truncate": True})
    assert r.status_code == 200 and len(r.json()) == 2


@pytest.mark.parametrize(
    "body",
    [
        {"query": "x", "texts": []},
        {"query": "x", "texts": None},
        {"query": "x", "texts": ["a"], "raw_scores": "maybe"},
        {"query": "x", "texts": ["a"], "truncation_direction": "Up"},
        {"texts": ["a"]},
    ],
)
def test_tei_bad_input(client, body):
    _error(client.post("/rerank", json=body), 422)


def test_rerank_routes_without_reranker(make_settings):
    with TestClient(create_app(make_settings(reranker="none"))) as c:
        _error(c.post("/rerank", json={"query": "x", "texts": ["a"]}), 503, "reranker")
        _error(c.post("/v2/rerank", json={"query": "x", "documents": ["a"]}), 503, "reranker")
        body = c.post("/search", json={"query": "revenue"}).json()
        assert body["reranked"] is False and len(body["results"]) == 5


# ---------------------------------------------------------------------- /documents
def test_documents_put_get_search_delete(client):
    doc = {
        "id": "new/1",
        "title": "Fabrikam 10-K",
        "text": "dividend raised to 2 dollars",
        "meta": {"year": 2022},
    }
    r = client.put("/documents", json={"documents": [doc]})
    assert r.status_code == 200, r.text
    assert r.json() == {"written": 1, "ids": ["new/1"], "documents": 6}
    got = client.get("/documents/new/1").json()
    assert got == {"id": "new/1", "text": doc["text"], "title": doc["title"], "meta": {"year": 2022}}
    hits = client.post("/search", json={"query": "dividend raised", "top_k": 6, "rerank": False}).json()[
        "results"
    ]
    assert "new/1" in [h["id"] for h in hits]
    # replace
    client.put("/documents", json={"documents": [{**doc, "text": "dividend cut", "meta": {"year": 2023}}]})
    assert client.get("/documents/new/1").json()["meta"] == {"year": 2023}
    assert client.get("/ready").json()["documents"] == 6
    assert client.delete("/documents/new/1").json() == {"id": "new/1", "deleted": True}
    _error(client.get("/documents/new/1"), 404, "new/1")
    _error(client.delete("/documents/new/1"), 404, "new/1")
    assert client.get("/ready").json()["documents"] == 5


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"documents": []}, 422, ["documents"]),
        ({"documents": [{"id": "", "text": "a"}]}, 422, ["id"]),
        ({"documents": [{"id": "a"}]}, 422, ["text", "required"]),
        ({"documents": [{"id": "a", "text": 5}]}, 422, ["text"]),
        ({"documents": [{"id": "a", "text": "b", "meta": []}]}, 422, ["meta"]),
        ({"documents": [{"id": "a", "text": "b", "meta": {"title": "t"}}]}, 422, ["title"]),
        ({"documents": [{"id": "a", "text": "b"}, {"id": "a", "text": "c"}]}, 422, ["more than once"]),
        ({"documents": [{"id": "a", "text": "b", "vector": [1]}]}, 422, ["vector"]),
        ({"documents": [{"id": "a\n", "text": "b"}]}, 422, ["control"]),
        ({"documents": [{"id": "a", "text": "b" * 1_000_000}]}, 413, ["documents[0].text", "limit"]),
        ({"documents": [{"id": f"d{i}", "text": "b"} for i in range(10_000)]}, 422, ["10000", "limit"]),
    ],
)
def test_documents_bad_input(client, body, status, words):
    _error(client.put("/documents", json=body), status, *words)
    assert client.get("/ready").json()["documents"] == 5  # nothing half-written


def test_documents_nan_in_meta_is_rejected(client):
    raw = b'{"documents": [{"id": "a", "text": "b", "meta": {"x": NaN}}]}'
    _error(client.put("/documents", content=raw, headers={"content-type": "application/json"}), 422, "finite")


# ---------------------------------------------------------------------- limits, auth, metrics
def test_body_size_limit(make_settings):
    with TestClient(create_app(make_settings(max_body_bytes=2048))) as c:
        _error(c.post("/rerank", json={"query": "q", "texts": ["x" * 4000]}), 413, "2048")

        def chunks():
            for _ in range(10):
                yield b"x" * 1000

        r = c.post("/rerank", content=chunks(), headers={"content-type": "application/json"})
        _error(r, 413, "2048")


def test_api_keys(make_settings, caplog):
    k1, k2 = "k-one-0123456789abcdef", "k-two-0123456789abcdef"  # keys need 16 characters or more
    with TestClient(create_app(make_settings(api_keys=f"{k1},{k2}"))) as c:
        assert c.get("/health").status_code == 200
        for path in ("/ready", "/metrics", "/openapi.json", "/docs", "/documents/fin-1"):
            _error(c.get(path), 401, "API key")
        _error(c.post("/search", json={"query": "x"}, headers={"Authorization": "Bearer wrong"}), 401)
        _error(c.post("/search", json={"query": "x"}, headers={"Authorization": k1}), 401)
        ok = c.post("/search", json={"query": "x"}, headers={"Authorization": f"Bearer {k2}"})
        assert ok.status_code == 200
        schema = c.get("/openapi.json", headers={"Authorization": f"Bearer {k1}"}).json()
        assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert "k-one" not in caplog.text and "k-two" not in caplog.text


def test_cors_off_by_default_and_on_when_configured(client, make_settings):
    r = client.get("/health", headers={"Origin": "https://app.example"})
    assert "access-control-allow-origin" not in r.headers
    with TestClient(create_app(make_settings(cors_origins="https://app.example"))) as c:
        r = c.get("/health", headers={"Origin": "https://app.example"})
        assert r.headers["access-control-allow-origin"] == "https://app.example"


def test_metrics(client):
    client.post("/v2/rerank", json={"query": "revenue", "documents": DOCS3})
    client.post("/search", json={"query": "revenue", "top_k": 2, "candidates": 4})
    client.post("/search", json={"query": ""})
    text = client.get("/metrics").text
    assert 'winnow_http_requests_total{method="POST",route="/v2/rerank",status="200"} 1.0' in text
    assert 'winnow_http_requests_total{method="POST",route="/search",status="422"} 1.0' in text
    assert "winnow_http_request_duration_seconds_bucket" in text
    assert "winnow_rerank_pairs_scored_total 7.0" in text
    assert "winnow_rerank_batch_pairs_count" in text
    assert "winnow_index_documents 5.0" in text


def test_queue_full_answers_429_with_retry_after(make_settings):
    app = create_app(make_settings(max_queue_pairs=4, batch_wait_ms=300.0))
    with TestClient(app) as c:
        batcher = app.state.service.batcher
        first = batcher.submit("hold", ["a", "b", "c"])  # occupies the queue while it waits for company
        r = c.post("/rerank", json={"query": "q", "texts": ["a", "b"]})
        body = _error(r, 429, "queue")
        assert int(r.headers["Retry-After"]) >= 1 and body["error_type"] == "overloaded"
        first.result(timeout=30)
        assert c.post("/rerank", json={"query": "q", "texts": ["a", "b"]}).status_code == 200


def test_settings_from_config_file(tmp_path, index_copy, monkeypatch):
    from winnow.api.settings import load_settings

    config = tmp_path / "winnow.toml"
    config.write_text(f'index = "{index_copy}"\nport = 9001\nmax_rerank_documents = 7\n')
    settings = load_settings(config)
    assert settings.port == 9001 and settings.max_rerank_documents == 7
    monkeypatch.setenv("WINNOW_PORT", "9002")
    assert load_settings(config).port == 9002  # environment beats the file
    assert load_settings(config, port=9003).port == 9003  # flags beat both
    (tmp_path / "bad.json").write_text(json.dumps({"index": str(index_copy), "prot": 1}))
    with pytest.raises(ValueError, match="prot"):
        load_settings(tmp_path / "bad.json")


def test_search_follows_the_cards_interpolation_weight(tmp_path, make_settings, tiny_cross_encoder_path):
    import shutil

    model = tmp_path / "carded"
    shutil.copytree(tiny_cross_encoder_path, model)
    (model / "winnow.json").write_text(json.dumps({"interpolation": {"weight": 0.5}}))
    with TestClient(create_app(make_settings(reranker=str(model)))) as c:
        body = {"query": "revenue billion", "top_k": 5, "candidates": 5}
        hits = c.post("/search", json=body).json()["results"]
    rerank = np.array([h["rerank_score"] for h in hits])
    first = np.array([h["first_stage_score"] for h in hits])

    def minmax(x):
        return (x - x.min()) / (x.max() - x.min())

    expected = 0.5 * minmax(rerank) + 0.5 * minmax(first)
    np.testing.assert_allclose([h["score"] for h in hits], expected, atol=1e-5)
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)


def test_onnx_backend_serves_the_same_ranking(make_settings, tiny_cross_encoder_path):
    pytest.importorskip("onnxruntime")
    body = {"query": "revenue", "documents": DOCS3}
    with TestClient(create_app(make_settings())) as torch_client:
        expected = torch_client.post("/v2/rerank", json=body).json()["results"]
    with TestClient(create_app(make_settings(backend="onnx"))) as onnx_client:
        assert onnx_client.app.state.service.engine.backend == "onnx"
        got = onnx_client.post("/v2/rerank", json=body).json()["results"]
    assert [r["index"] for r in got] == [r["index"] for r in expected]
    np.testing.assert_allclose(
        [r["relevance_score"] for r in got], [r["relevance_score"] for r in expected], atol=1e-4
    )


def test_windows_setting_reaches_the_engine(make_settings):
    with TestClient(create_app(make_settings(windows=False))) as c:
        assert c.app.state.service.engine.windows is False
    with TestClient(create_app(make_settings())) as c:
        assert c.app.state.service.engine.windows is True  # no card, no setting: windows
