"""What routes share: the loaded service, and the text limits every route applies the same way."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from winnow.api.errors import ApiError
from winnow.api.schemas import ErrorResponse, check_filter_values
from winnow.api.service import SearchService
from winnow.api.settings import WinnowSettings
from winnow.retrieval.metadata_filter import FilterLimitError, check_filter_limits

ERROR_RESPONSES: dict[int | str, dict] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        400: "the body is not JSON in UTF-8",
        401: "missing or wrong API key",
        413: "body, query or document over its limit",
        422: "invalid request: the message names the field",
        429: "rerank queue full: retry after the Retry-After header's seconds",
        503: "still loading or shutting down",
    }.items()
}


def ready_service(request: Request) -> SearchService:
    service: SearchService = request.app.state.service
    if not service.ready:
        raise ApiError(503, "the service is loading or shutting down", headers={"Retry-After": "5"})
    return service


ServiceDep = Annotated[SearchService, Depends(ready_service)]


def fit_text(text: str, limit: int, what: str, *, truncate: bool) -> str:
    """``text`` when within ``limit`` characters; else cut to it (``truncate``) or a 413 naming ``what``."""
    if len(text) <= limit:
        return text
    if truncate:
        return text[:limit]
    raise ApiError(
        413,
        f"{what} is {len(text)} characters; the limit is {limit}. Shorten it, or let the server truncate "
        "(WINNOW_LONG_TEXT=truncate; on /rerank also `truncate: true`)",
    )


def fit_texts(texts: list[str], limit: int, what: str, *, truncate: bool, left: bool = False) -> list[str]:
    out = []
    for i, text in enumerate(texts):
        if left and truncate and len(text) > limit:
            out.append(text[-limit:])
        else:
            out.append(fit_text(text, limit, f"{what}[{i}]", truncate=truncate))
    return out


_FILTER_SETTINGS = {"nodes": "WINNOW_MAX_FILTER_NODES", "values": "WINNOW_MAX_FILTER_IN_VALUES"}


def check_filter_cost(filters: dict[str, Any] | None, settings: WinnowSettings) -> None:
    """422 for a filter over the size limits (checked first, in time bounded by the limits, so a huge filter
    is refused at once), or one holding non-finite numbers, invalid Unicode or more than 16 levels."""
    if not filters:
        return
    try:
        check_filter_limits(
            filters, max_nodes=settings.max_filter_nodes, max_values=settings.max_filter_in_values
        )
    except FilterLimitError as err:
        setting = _FILTER_SETTINGS.get(err.what)
        raise ApiError(422, f"filters: {err}" + (f" ({setting})" if setting else "")) from None
    try:
        check_filter_values(filters)
    except ValueError as err:
        raise ApiError(422, str(err)) from None
