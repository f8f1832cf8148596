"""The rerank endpoints say what they do: pure scores documented, fusion with the order sent (opt-in), and
how every reranked document was read, on /v2/rerank, /rerank and /search."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from fastapi.testclient import TestClient

from winnow.api.app import create_app
from winnow.rerank.engine import CrossEncoderEngine, sigmoid
from winnow.rerank.interpolation import interpolate_with_order
from winnow.rerank.windows import window_spans

QUERY = "revenue growth"
DOCS4 = [
    "the cat sat on the mat",
    "revenue grew to 4 billion",
    "a protein folds in yeast cells",
    "net income and cash flow of the fiscal year",
]
LONG = "the company said revenue " * 300 + "banana"  # 1201 tokens: more than a 512-token pair holds


@pytest.fixture(scope="module")
def logits(tiny_cross_encoder_path: str) -> np.ndarray:
    return CrossEncoderEngine(tiny_cross_encoder_path, device="cpu").score(QUERY, DOCS4).astype(np.float64)


def _reversed_by_pure_order(logits: np.ndarray) -> list[str]:
    """DOCS4 sent in the reverse of the pure reranker's order: the client's first is the reranker's last."""
    return [DOCS4[i] for i in np.argsort(logits, kind="stable")]


# ---------------------------------------------------------------------- pure scores, documented
def test_pure_scores_are_the_sigmoid_of_the_logit_and_the_schema_says_so(client, logits):
    body = client.post("/v2/rerank", json={"query": QUERY, "documents": DOCS4}).json()
    assert [r["index"] for r in body["results"]] == np.argsort(-logits, kind="stable").tolist()
    for r in body["results"]:
        assert r["relevance_score"] == pytest.approx(sigmoid(logits[r["index"]]), abs=1e-6)
        assert r["rerank_score"] is None  # no fusion: nothing but the cross-encoder
    assert "fusion" not in body["meta"]
    schema = client.get("/openapi.json").json()
    described = json.dumps(schema["components"]["schemas"]["CohereRerankResult"])
    assert "sigmoid(logit)" in described and "no first-stage score" in described
    assert "sigmoid(logit)" in json.dumps(schema["components"]["schemas"]["TeiRank"])
    assert "pure cross-encoder scores" in schema["paths"]["/v2/rerank"]["post"]["description"]
    assert "pure cross-encoder scores" in schema["paths"]["/rerank"]["post"]["description"]
    assert "ReadingOut" in schema["components"]["schemas"]


# ---------------------------------------------------------------------- fusion with the order sent
def test_fusion_with_the_client_order_changes_the_order_where_it_must(client, logits):
    sent = _reversed_by_pure_order(logits)
    pure = client.post("/v2/rerank", json={"query": QUERY, "documents": sent}).json()
    assert pure["results"][0]["index"] == len(sent) - 1  # the reranker's best was sent last

    fusion = {"with": "client_order", "weight": 0.2}
    fused = client.post("/v2/rerank", json={"query": QUERY, "documents": sent, "fusion": fusion}).json()
    assert fused["results"][0]["index"] == 0  # 0.8 from the order sent outweighs 0.2 from the reranker
    sent_logits = np.sort(logits)  # the logits of `sent`, in order
    expected = interpolate_with_order(sent_logits, 0.2)
    for r in fused["results"]:
        assert r["relevance_score"] == pytest.approx(expected[r["index"]], abs=1e-6)
        assert r["rerank_score"] == pytest.approx(sigmoid(sent_logits[r["index"]]), abs=1e-6)
        assert 0.0 <= r["relevance_score"] <= 1.0
    assert fused["meta"]["fusion"] == {"with": "client_order", "weight": 0.2, "source": "request"}

    only_order = client.post(
        "/v2/rerank", json={"query": QUERY, "documents": sent, "fusion": {"weight": 0.0}}
    ).json()
    assert [r["index"] for r in only_order["results"]] == [0, 1, 2, 3]
    pure_again = client.post(
        "/v2/rerank", json={"query": QUERY, "documents": sent, "fusion": {"weight": 1.0}}
    ).json()
    assert [r["index"] for r in pure_again["results"]] == [r["index"] for r in pure["results"]]


def test_tei_fusion_keeps_the_reranker_score_apart(client, logits):
    sent = _reversed_by_pure_order(logits)
    pure = client.post("/rerank", json={"query": QUERY, "texts": sent, "raw_scores": True}).json()
    assert pure[0]["index"] == 3 and "rerank_score" not in pure[0]
    fused = client.post(
        "/rerank", json={"query": QUERY, "texts": sent, "raw_scores": True, "fusion": {"weight": 0.2}}
    ).json()
    assert fused[0]["index"] == 0
    raw = {x["index"]: x["score"] for x in pure}
    assert all(x["rerank_score"] == pytest.approx(raw[x["index"]], abs=1e-6) for x in fused)


def test_fusion_weight_defaults_to_the_model_card(make_settings, tiny_cross_encoder_path, tmp_path, logits):
    sent = _reversed_by_pure_order(logits)
    body = {"query": QUERY, "documents": sent, "fusion": {"with": "client_order"}}
    with TestClient(create_app(make_settings())) as c:  # no card: 0.5
        assert c.post("/v2/rerank", json=body).json()["meta"]["fusion"]["source"] == "default"
    carded = tmp_path / "carded"
    shutil.copytree(tiny_cross_encoder_path, carded)
    (carded / "winnow.json").write_text(json.dumps({"interpolation": {"weight": 0.25}}))
    with TestClient(create_app(make_settings(reranker=str(carded)))) as c:
        out = c.post("/v2/rerank", json=body).json()
    assert out["meta"]["fusion"] == {"with": "client_order", "weight": 0.25, "source": "card"}
    expected = interpolate_with_order(np.sort(logits), 0.25)
    assert out["results"][0]["relevance_score"] == pytest.approx(expected.max(), abs=1e-6)


@pytest.mark.parametrize(
    ("route", "field"), [("/v2/rerank", "documents"), ("/rerank", "texts")], ids=["cohere", "tei"]
)
@pytest.mark.parametrize(
    "fusion", [{"weight": 1.5}, {"weight": -0.1}, {"with": "first_stage"}, {"wieght": 0.5}, "yes"]
)
def test_bad_fusion_is_a_422_that_names_it(client, route, field, fusion):
    r = client.post(route, json={"query": QUERY, field: DOCS4, "fusion": fusion})
    assert r.status_code == 422, r.text
    assert "fusion" in r.json()["message"]


# ---------------------------------------------------------------------- how each document was read
def test_every_reranked_document_says_how_it_was_read(client, tiny_cross_encoder_path):
    docs = ["revenue growth", LONG]
    cohere = client.post("/v2/rerank", json={"query": "revenue", "documents": docs}).json()
    tei = client.post("/rerank", json={"query": "revenue", "texts": docs}).json()
    engine = CrossEncoderEngine(tiny_cross_encoder_path, device="cpu")
    expected = engine.score_with_readings("revenue", docs).readings
    budget = 512 - 3 - 1  # the tiny model's max length, its special tokens, a one-token query
    spans = window_spans(1201, budget, budget - budget // 4)
    assert expected[1].windows == len(spans) > 1 and expected[1].tokens == budget
    for results in (cohere["results"], tei):
        reading = {r["index"]: r["reading"] for r in results}
        assert reading[0]["read"] == "whole" and reading[0]["tokens"] == reading[0]["document_tokens"] == 2
        assert reading[1]["read"] == "windows" and reading[1]["windows"] == len(spans)
        assert reading[1]["tokens"] == budget and reading[1]["document_tokens"] == 1201
        assert reading[1]["best_window"] == expected[1].best_window and reading[1]["complete"]
    assert "best_window" not in {r["index"]: r for r in tei}[0]["reading"]  # TEI leaves out nulls


def test_truncating_server_reports_truncation_at_its_budget(make_settings):
    with TestClient(create_app(make_settings(windows=False))) as c:
        body = c.post("/v2/rerank", json={"query": "revenue", "documents": ["revenue growth", LONG]}).json()
    reading = {r["index"]: r["reading"] for r in body["results"]}
    assert reading[1]["read"] == "truncated" and reading[1]["tokens"] == 512 - 3 - 1
    assert reading[1]["windows"] == 1 and reading[1]["best_window"] is None and not reading[1]["complete"]
    assert reading[0]["read"] == "whole" and reading[0]["complete"]


def test_character_cuts_made_by_the_server_are_reported(make_settings):
    settings = make_settings(max_document_chars=40, max_query_chars=8, long_text="truncate")
    with TestClient(create_app(settings)) as c:
        tei = c.post("/rerank", json={"query": "revenue growth", "texts": ["revenue " * 20, "cash"]}).json()
    reading = {x["index"]: x["reading"] for x in tei}
    assert reading[0]["read"] == "whole" and not reading[0]["complete"]  # cut to 40 characters first
    assert reading[1]["complete"]
    assert all(r["query_truncated"] for r in reading.values())  # the query was cut to 8 characters


def test_search_hits_say_how_they_were_read(client):
    body = client.post("/search", json={"query": "revenue billion dollars", "top_k": 3}).json()
    assert body["reranked"] and len(body["results"]) == 3
    for hit in body["results"]:
        assert hit["reading"]["read"] == "whole"
        assert hit["reading"]["tokens"] == hit["reading"]["document_tokens"] > 0
        assert "reading" not in hit["meta"]  # the stored metadata stays the document's own
    plain = client.post("/search", json={"query": "revenue", "top_k": 2, "rerank": False}).json()
    assert all(hit["reading"] is None for hit in plain["results"])
