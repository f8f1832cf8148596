"""Overload: admission by the latency budget (429 at once, counted in /metrics), the rerank timeout, work of
a client that went away cancelled, and /search waiting without holding threadpool threads."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import LiveServer, free_port
from winnow.api.app import create_app


class GatedScorer:
    """Stands in for the engine's ``score_pairs``: waits for ``gate``, records what it scored."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.busy = threading.Event()
        self.scored: list[str] = []

    def score_pairs(self, pairs):
        self.busy.set()
        assert self.gate.wait(60), "the test never opened the gate"
        self.scored.extend(d for _, d in pairs)
        return np.zeros(len(pairs), dtype=np.float32)


def _gate(service) -> GatedScorer:
    """Replace the batcher's scorer by a gated one (the engine still estimates costs)."""
    scorer = GatedScorer()
    service.batcher.scorer = scorer
    return scorer


def _hold(service, scorer: GatedScorer, cost: int | None = None):
    """Queue a request the worker gets stuck on; returns its future."""
    extra = {} if cost is None else {"cost": cost}
    future = service.batcher.submit("hold", ["held document"], **extra)
    assert scorer.busy.wait(10)
    return future


def test_over_the_latency_budget_answers_429_at_once_and_metrics_count_it(make_settings):
    app = create_app(make_settings(max_queue_pairs=10**9, latency_budget_ms=2000))
    with TestClient(app) as c:
        service = app.state.service
        assert c.post("/rerank", json={"query": "q", "texts": ["a", "b"]}).status_code == 200  # measures
        rate = service.batcher.windows_per_second
        assert rate > 0
        scorer = _gate(service)
        held = _hold(service, scorer, cost=int(rate * 10) + 1)  # ten seconds of queued work
        for path, body in (
            ("/rerank", {"query": "q", "texts": ["a", "b"]}),
            ("/v2/rerank", {"model": "m", "query": "q", "documents": ["a"]}),
            ("/search", {"query": "revenue", "top_k": 2}),
        ):
            start = time.perf_counter()
            r = c.post(path, json=body)
            assert time.perf_counter() - start < 5.0, f"{path} waited instead of answering 429 at once"
            assert r.status_code == 429, (path, r.text)
            assert r.json()["error_type"] == "overloaded" and "latency budget" in r.json()["message"]
            assert int(r.headers["Retry-After"]) >= 1
        assert c.post("/search", json={"query": "revenue", "top_k": 2, "rerank": False}).status_code == 200
        text = c.get("/metrics").text
        assert 'winnow_rerank_rejected_total{reason="latency_budget"} 3.0' in text
        scorer.gate.set()
        held.result(timeout=30)
        assert c.post("/rerank", json={"query": "q", "texts": ["a", "b"]}).status_code == 200
        assert c.post("/search", json={"query": "revenue", "top_k": 2}).status_code == 200
        assert service.batcher.pending_windows == 0  # /search's reservation was used up, nothing leaks


def test_rerank_timeout_answers_503_and_drops_the_work(make_settings):
    app = create_app(make_settings(rerank_timeout_s=0.5))
    with TestClient(app) as c:
        service = app.state.service
        scorer = _gate(service)
        held = _hold(service, scorer)
        start = time.perf_counter()
        r = c.post("/rerank", json={"query": "q", "texts": ["late-1", "late-2"]})
        assert r.status_code == 503 and "WINNOW_RERANK_TIMEOUT_S" in r.json()["message"]
        assert time.perf_counter() - start < 10
        assert service.batcher.pending_pairs == 1  # only the held request is left
        scorer.gate.set()
        held.result(timeout=30)
    assert "late-1" not in scorer.scored


@pytest.fixture()
def live(make_settings):
    settings = make_settings(port=free_port(), max_queue_pairs=10**6)
    with LiveServer(settings) as server:
        yield server


def _wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_a_disconnected_clients_rerank_work_is_cancelled(live):
    service = live.app.state.service
    scorer = _gate(service)
    held = _hold(service, scorer)
    with pytest.raises(httpx.TimeoutException):  # the client gives up and closes its connection
        httpx.post(f"{live.url}/rerank", json={"query": "q", "texts": ["gone-1", "gone-2"]}, timeout=1.0)
    assert _wait_for(lambda: service.batcher.pending_pairs == 1), "the gone client's pairs are still queued"
    scorer.gate.set()
    held.result(timeout=30)
    assert "gone-1" not in scorer.scored


def test_searches_waiting_on_the_reranker_hold_no_threadpool_threads(live):
    """60 searches (more than the 40 threadpool tokens) wait on a stuck reranker; /documents still answers."""
    service = live.app.state.service
    scorer = _gate(service)
    held = _hold(service, scorer)

    async def main() -> tuple[list[int], float]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(base_url=live.url, timeout=60, limits=limits) as http:
            searches = [
                asyncio.create_task(http.post("/search", json={"query": f"revenue {i}", "top_k": 2}))
                for i in range(60)
            ]
            deadline = time.monotonic() + 20
            while service.batcher.pending_pairs < 1 + 40 * 5 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)  # old code: never more than 40 searches reach the queue
            await asyncio.sleep(0.5)
            start = time.perf_counter()
            try:
                doc = await http.get("/documents/fin-1", timeout=5)
                status = doc.status_code
            except httpx.TimeoutException:
                status = 0
            elapsed = time.perf_counter() - start
            scorer.gate.set()
            return [status] + [(await s).status_code for s in searches], elapsed

    statuses, elapsed = asyncio.run(main())
    held.result(timeout=30)
    assert statuses[0] == 200, f"GET /documents stalled ({elapsed:.1f} s) behind searches waiting to rerank"
    assert statuses[1:] == [200] * 60
