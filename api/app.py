"""The FastAPI app of ``winnow serve``: ``create_app(settings)`` wires settings, service, routes and guards.

Models and index are loaded once, in the lifespan (the server accepts connections when they are ready); a
background task saves the index on schedule, and shutdown saves it a last time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.concurrency import run_in_threadpool

from winnow.api import __version__
from winnow.api.errors import install_error_handlers
from winnow.api.metrics import MetricsMiddleware, ServiceMetrics
from winnow.api.middleware import ApiKeyAuth, BodySizeLimit
from winnow.api.routes import documents, health, rerank, search
from winnow.api.service import SearchService
from winnow.api.settings import WinnowSettings, load_settings
from winnow.indexes import StorageFullError

logger = logging.getLogger(__name__)

DESCRIPTION = """Search and rerank over HTTP.

* `POST /search`: a dense, BM25 or hybrid first stage over the served index, reranked by a cross-encoder.
* `POST /v2/rerank` (Cohere v2) and `POST /rerank` (Hugging Face TEI): rerank your own documents; existing
  clients work by changing their base URL.
* `PUT /documents`, `GET`/`DELETE /documents/{id}`: durable writes (acknowledged once in the write-ahead log).
* `GET /health`, `GET /ready`, `GET /metrics` (Prometheus).

Errors are JSON: `{"error", "error_type", "message", "detail"?}`. With API keys configured, every route but
`/health` needs `Authorization: Bearer <key>`.
"""


async def _snapshot_loop(service: SearchService) -> None:
    interval = service.settings.snapshot_interval_s
    if not interval:
        return
    while True:
        await asyncio.sleep(min(interval, 5.0))
        if service.snapshot_due():
            try:
                await run_in_threadpool(service.snapshot)
            except StorageFullError as exc:  # the log still holds every write; retried after a back-off
                logger.error(
                    "saving the index failed: %s; writes stay in the write log, next try in %.0f s",
                    exc.strerror or exc,
                    service.snapshot_retry_s(),
                )
            except Exception:  # noqa: BLE001 - the log still holds every write; retried after a back-off
                logger.exception(
                    "saving the index failed; writes stay in the write log, next try in %.0f s",
                    service.snapshot_retry_s(),
                )


def create_app(settings: WinnowSettings | None = None, **overrides: Any) -> FastAPI:
    """The service's app. ``settings`` default to :func:`api.settings.load_settings` (env, config file)."""
    settings = settings or load_settings(**overrides)
    metrics = ServiceMetrics()
    if settings.postgres_uri is not None:  # the documents live in PostgreSQL + pgvector
        from winnow.api.store_service import StoreSearchService

        service: SearchService = StoreSearchService(settings, on_batch=metrics.on_batch)
    else:
        service = SearchService(settings, on_batch=metrics.on_batch)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(service.load)
        saver = asyncio.create_task(_snapshot_loop(service))
        try:
            yield
        finally:
            saver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await saver
            await run_in_threadpool(service.close)

    app = FastAPI(title="winnow", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.service = service
    app.state.metrics = metrics
    install_error_handlers(app)
    for module in (search, rerank, documents, health):
        app.include_router(module.router)
    # added innermost first: the body limit sees requests last, the metrics first
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    keys = settings.api_key_values()
    app.add_middleware(ApiKeyAuth, keys=keys, read_only_keys=settings.read_only_key_values())
    if settings.cors_origins:  # outside the keys: a genuine preflight is answered without one
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    if settings.authenticated:
        _document_bearer_auth(app)
    return app


_ERROR_REF = "#/components/schemas/ErrorResponse"


def _document_bearer_auth(app: FastAPI) -> None:
    """Declare the bearer scheme in the OpenAPI schema, so /docs offers an "Authorize" button."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = {
                "type": "http",
                "scheme": "bearer",
            }
            for path, operations in schema.get("paths", {}).items():
                if path == "/health":
                    continue
                for operation in operations.values():
                    operation["security"] = [{"bearer": []}]
                    operation.setdefault("responses", {}).setdefault(
                        "401",
                        {
                            "description": "missing or wrong API key",
                            "content": {"application/json": {"schema": {"$ref": _ERROR_REF}}},
                        },
                    )
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
