"""``GET /health`` (process up), ``GET /ready`` (models and index loaded), ``GET /metrics`` (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from winnow.api.schemas import Health, Readiness
from winnow.api.service import SearchService

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health)
async def health() -> Health:
    """200 while the process serves HTTP; never needs an API key."""
    return Health(status="ok")


@router.get("/ready", response_model=Readiness, responses={503: {"model": Readiness}})
async def ready(request: Request):
    """200 once the index and models are loaded; 503 while loading or shutting down."""
    service: SearchService = request.app.state.service
    if not service.ready:
        return JSONResponse(Readiness(status="loading").model_dump(), status_code=503)
    documents, vectors = await run_in_threadpool(service.count)  # the table's lock: never on the event loop
    engine = getattr(service, "engine", None)
    return Readiness(
        status="ready",
        documents=documents,
        vectors=vectors,
        embedder=service.embedder_name,
        reranker=service.reranker_name,
        reranker_backend=None if engine is None else engine.backend,
        reranker_backend_note=None if engine is None else engine.backend_note,
        reranker_note=None if service.searcher is None else service.searcher.first_stage_only,
    )


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus text: requests and latency per route, pairs scored, batch sizes, queue and index size."""
    service: SearchService = request.app.state.service
    registry = request.app.state.metrics
    if service.ready:
        documents, vectors = await run_in_threadpool(service.count)
        registry.documents.set(documents)
        registry.vectors.set(vectors)
    if service.batcher is not None:
        registry.queue_pairs.set(service.batcher.pending_pairs)
    return Response(registry.render(), media_type=CONTENT_TYPE_LATEST)
