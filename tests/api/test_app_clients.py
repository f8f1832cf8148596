"""Existing clients work against ``winnow serve`` by changing only their base URL (skipped when absent)."""

from __future__ import annotations

import numpy as np
import pytest

from winnow.rerank.engine import CrossEncoderEngine

DOCS = [
    "Carson City is the capital city of the American state of Nevada.",
    "Washington, D.C. is the capital of the United States.",
    "Capital punishment has existed in the United States since before it was a country.",
    "The Commonwealth of the Northern Mariana Islands is a group of islands in the Pacific Ocean.",
]
QUERY = "What is the capital of the United States?"


@pytest.fixture(scope="module")
def expected_order(tiny_cross_encoder_path) -> list[int]:
    logits = CrossEncoderEngine(tiny_cross_encoder_path, device="cpu").score(QUERY, DOCS)
    return np.argsort(-logits, kind="stable").tolist()


def test_official_cohere_client_v2(live_server, expected_order):
    cohere = pytest.importorskip("cohere")
    client = cohere.ClientV2(api_key="test-key-0123456789", base_url=live_server.url)
    response = client.rerank(model="rerank-v3.5", query=QUERY, documents=DOCS, top_n=3)
    assert [r.index for r in response.results] == expected_order[:3]
    scores = [r.relevance_score for r in response.results]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    wrong = cohere.ClientV2(api_key="wrong-key", base_url=live_server.url)
    with pytest.raises(cohere.core.ApiError) as info:
        wrong.rerank(model="rerank-v3.5", query=QUERY, documents=DOCS)
    assert info.value.status_code == 401


def test_official_cohere_async_client(live_server, expected_order):
    cohere = pytest.importorskip("cohere")
    import asyncio

    async def main():
        client = cohere.AsyncClientV2(api_key="test-key-0123456789", base_url=live_server.url)
        return await asyncio.gather(
            *(client.rerank(model="m", query=QUERY, documents=DOCS) for _ in range(8))
        )

    for response in asyncio.run(main()):
        assert [r.index for r in response.results] == expected_order


def test_haystack_cohere_ranker(live_server, expected_order):
    ranker_module = pytest.importorskip("haystack_integrations.components.rankers.cohere")
    from haystack import Document
    from haystack.utils import Secret

    ranker = ranker_module.CohereRanker(
        api_key=Secret.from_token("test-key-0123456789"),
        api_base_url=live_server.url,
        top_k=10,  # more than the documents
    )
    ranker.warm_up()
    docs = [Document(id=f"d{i}", content=text) for i, text in enumerate(DOCS)]
    out = ranker.run(query=QUERY, documents=docs)["documents"]
    assert [d.id for d in out] == [f"d{i}" for i in expected_order]
    assert all(0 <= d.score <= 1 for d in out)


def test_plain_http_search_with_key(live_server):
    import httpx

    headers = {"Authorization": "Bearer test-key-0123456789"}
    r = httpx.post(f"{live_server.url}/search", json={"query": "revenue", "top_k": 2}, headers=headers)
    assert r.status_code == 200 and len(r.json()["results"]) == 2
    assert httpx.get(f"{live_server.url}/health").status_code == 200
    assert httpx.get(f"{live_server.url}/ready").status_code == 401


def test_cohere_client_parses_pure_and_fused_responses_with_readings(live_server, expected_order):
    """Fusion with the order sent is opt-in (a body field the client passes through), and changes the order
    where it must: documents sent in the reverse of the reranker's order, fused with weight 0.2."""
    cohere = pytest.importorskip("cohere")
    client = cohere.ClientV2(api_key="test-key-0123456789", base_url=live_server.url)
    sent = [DOCS[i] for i in reversed(expected_order)]  # the reranker's best is sent last
    pure = client.rerank(model="rerank-v3.5", query=QUERY, documents=sent)
    assert [r.index for r in pure.results] == [3, 2, 1, 0]
    assert all(r.reading["read"] == "whole" and r.reading["complete"] for r in pure.results)
    assert all(getattr(r, "rerank_score", None) is None for r in pure.results)

    fused = client.rerank(
        model="rerank-v3.5",
        query=QUERY,
        documents=sent,
        request_options={"additional_body_parameters": {"fusion": {"with": "client_order", "weight": 0.2}}},
    )
    assert fused.results[0].index == 0 != pure.results[0].index
    scores = [r.relevance_score for r in fused.results]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    pure_score = {r.index: r.relevance_score for r in pure.results}
    assert all(r.rerank_score == pytest.approx(pure_score[r.index]) for r in fused.results)
    assert fused.meta.fusion == {"with": "client_order", "weight": 0.2, "source": "request"}
    assert all(r.reading["read"] == "whole" for r in fused.results)
