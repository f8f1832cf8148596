"""One JSON error shape for every failure (TEI's ``error``/``error_type`` plus Cohere's ``message``)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from haystack.document_stores.errors import DocumentStoreError
from haystack.errors import FilterError
from starlette.exceptions import HTTPException as StarletteHTTPException

from winnow.indexes import StorageFullError, WriteLogUnavailableError, is_disk_full
from winnow.rerank.micro_batcher import QueueFullError
from winnow.retrieval.metadata_filter import FilterMatchError
from winnow.retrieval.store_uri import redact_dsn

logger = logging.getLogger(__name__)

_TYPES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    422: "validation",
    429: "overloaded",
    503: "unavailable",
    507: "insufficient_storage",
}


class ApiError(Exception):
    """An error with its HTTP status, raised by routes and turned into the JSON error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type or _TYPES.get(status, "error")
        self.headers = headers


def error_body(
    status: int, message: str, error_type: str | None = None, detail: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Every error's JSON: TEI's ``error``/``error_type``, Cohere's ``message``, ``detail`` per field."""
    body: dict[str, Any] = {
        "error": message,
        "error_type": error_type or _TYPES.get(status, "error"),
        "message": message,
    }
    if detail is not None:
        body["detail"] = detail
    return body


def error_response(
    status: int,
    message: str,
    *,
    error_type: str | None = None,
    detail: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(status, message, error_type, detail), status_code=status, headers=headers)


def _location(loc: tuple | list) -> str:
    parts = [str(p) for p in loc if p != "body"] or ["body"]
    out = parts[0]
    for part in parts[1:]:
        out += f"[{part}]" if part.isdigit() else f".{part}"
    return out


def _validation_detail(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    detail = []
    for err in errors:
        item = {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
        detail.append(jsonable_encoder(item))
    return detail


def validation_message(errors: list[dict[str, Any]]) -> str:
    parts = []
    for err in errors[:5]:
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if err.get("type") == "json_invalid":
            ctx = err.get("ctx") or {}
            msg = f"the body is not valid JSON ({ctx.get('error', msg)})"
            parts.append(msg)
            continue
        if err.get("type") == "missing":
            msg = "is required"
        elif err.get("type") in ("string_pattern_mismatch", "string_too_short") and err.get("loc", ())[
            -1:
        ] == ("query",):
            msg = "must not be empty or only whitespace"
        parts.append(f"{_location(err.get('loc', ()))}: {msg}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


def install_error_handlers(app: FastAPI) -> None:
    """Every error a route can raise becomes a JSON body with a 4xx; anything else is a logged 500."""

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        return error_response(422, validation_message(errors), detail=_validation_detail(errors))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}; see /docs"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}; see /docs"
        elif exc.status_code == 400 and "parsing the body" in message:
            message = "the body could not be read as JSON in UTF-8"
        return error_response(exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, error_type=exc.error_type, headers=exc.headers)

    @app.exception_handler(FilterError)
    async def _filter(request: Request, exc: FilterError) -> JSONResponse:
        return error_response(422, f"filters: {exc}", error_type="validation")

    @app.exception_handler(FilterMatchError)
    async def _filter_match(request: Request, exc: FilterMatchError) -> JSONResponse:
        return error_response(422, f"filters: {exc}", error_type="validation")

    @app.exception_handler(DocumentStoreError)
    async def _store_down(request: Request, exc: DocumentStoreError) -> JSONResponse:
        route = getattr(request.scope.get("route"), "path", None) or "unmatched"  # the template: no ids
        message = redact_dsn(str(exc)).split("\n", 1)[0]
        logger.error("%s %s: document store error: %s", request.method, route, message)
        return error_response(503, f"the document store failed: {message}", headers={"Retry-After": "5"})

    @app.exception_handler(QueueFullError)
    async def _full(request: Request, exc: QueueFullError) -> JSONResponse:
        metrics = getattr(request.app.state, "metrics", None)
        if metrics is not None:
            metrics.rerank_rejected.labels(exc.reason).inc()
        retry = str(max(1, int(round(exc.retry_after))))
        return error_response(429, f"{exc}; retry in {retry} s", headers={"Retry-After": retry})

    @app.exception_handler(WriteLogUnavailableError)
    async def _log_down(request: Request, exc: WriteLogUnavailableError) -> JSONResponse:
        return error_response(503, str(exc))

    @app.exception_handler(OSError)
    async def _os_error(request: Request, exc: OSError) -> JSONResponse:
        if isinstance(exc, StorageFullError) or is_disk_full(exc):
            route = getattr(request.scope.get("route"), "path", None) or "unmatched"  # the template: no ids
            logger.error("%s %s: disk full: %s", request.method, route, exc)
            if isinstance(exc, StorageFullError):
                return error_response(507, exc.strerror or str(exc))
            return error_response(
                507, f"the disk holding the index is full ({exc}); free space (or raise the quota) and retry"
            )
        return await _bug(request, exc)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        route = getattr(request.scope.get("route"), "path", None) or "unmatched"  # the template: no ids
        logger.exception("unhandled error on %s %s", request.method, route)
        return error_response(500, f"internal error ({type(exc).__name__}); this is a bug in winnow")
