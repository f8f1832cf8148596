"""Prometheus metrics of one app: requests and latency per route, pairs scored, batch sizes, index size."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


def method_label(method: str) -> str:
    """The method as a label value: a standard one as is, anything else ``other`` (bounded label values)."""
    return method if method in _METHODS else "other"


class ServiceMetrics:
    """The service's metrics in a registry of its own (several apps in one process do not collide)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "winnow_http_requests",
            "HTTP requests by route template, method and status code",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "winnow_http_request_duration_seconds",
            "HTTP request latency by route template",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.pairs_scored = Counter(
            "winnow_rerank_pairs_scored",
            "query-document pairs scored by the reranker",
            registry=self.registry,
        )
        self.batch_pairs = Histogram(
            "winnow_rerank_batch_pairs",
            "pairs per model call of the micro-batcher",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.batch_requests = Histogram(
            "winnow_rerank_batch_requests",
            "requests sharing one model call of the micro-batcher",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "winnow_rerank_batch_duration_seconds",
            "duration of one model call",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.documents = Gauge("winnow_index_documents", "documents stored", registry=self.registry)
        self.vectors = Gauge("winnow_index_vectors", "vectors searchable", registry=self.registry)
        self.queue_pairs = Gauge(
            "winnow_rerank_queue_pairs", "pairs waiting or being scored", registry=self.registry
        )
        self.rerank_rejected = Counter(
            "winnow_rerank_rejected",
            "rerank work answered 429 at once, by reason (latency_budget, queue_full)",
            ["reason"],
            registry=self.registry,
        )

    def on_batch(self, pairs: int, requests: int, seconds: float) -> None:
        """The micro-batcher's hook."""
        self.pairs_scored.inc(pairs)
        self.batch_pairs.observe(pairs)
        self.batch_requests.observe(requests)
        self.batch_seconds.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts requests and observes latency, labelled by route template (bounded label values)."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        start = time.perf_counter()

        async def observing_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observing_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"  # never the raw path: bounded labels
            self.metrics.requests.labels(template, method_label(scope.get("method", "")), str(status)).inc()
            self.metrics.latency.labels(template).observe(time.perf_counter() - start)
