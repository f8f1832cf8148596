"""``POST /search``: the first stage over the served index, then (optionally) reranking."""

from __future__ import annotations

from fastapi import APIRouter
from haystack.errors import FilterError
from starlette.concurrency import run_in_threadpool

from winnow.api.dependencies import ERROR_RESPONSES, ServiceDep, fit_text
from winnow.api.errors import ApiError
from winnow.api.schemas import SearchHit, SearchRequest, SearchResponse
from winnow.retrieval.metadata_filter import validate_filters

router = APIRouter(tags=["search"])

FILTER_HINT = (
    "A condition is {field: 'meta.NAME', operator: '==' | '!=' | '>' | '>=' | '<' | '<=' | 'in' | 'not in', "
    "value}; combine conditions with {operator: 'AND' | 'OR' | 'NOT', conditions: [...]}."
)


@router.post("/search", response_model=SearchResponse, responses=ERROR_RESPONSES)
async def search(body: SearchRequest, service: ServiceDep) -> SearchResponse:
    """Dense first stage over the index (restricted by `filters`), the top `candidates` reranked by the
    cross-encoder, the best `top_k` returned. `rerank: false` (or no reranker): the first stage's order."""
    settings = service.settings
    for name in ("top_k", "candidates"):
        value = getattr(body, name)
        if value is not None and value > settings.max_top_k:
            raise ApiError(422, f"{name} is {value}; the limit is {settings.max_top_k} (WINNOW_MAX_TOP_K)")
    if body.filters:  # {} is no filter
        try:
            validate_filters(body.filters, required=True)
        except (ValueError, FilterError) as err:
            raise ApiError(422, f"filters: {err} {FILTER_HINT}") from None
    query = fit_text(body.query, settings.max_query_chars, "query", truncate=settings.long_text == "truncate")
    result = await run_in_threadpool(
        service.search,
        query,
        top_k=body.top_k,
        candidates=body.candidates or settings.default_candidates,  # never fewer than top_k
        rerank=body.rerank,
        filters=body.filters or None,
    )
    return SearchResponse(
        results=[SearchHit(**hit.to_dict()) for hit in result.results],
        timings_ms={k: round(v, 3) for k, v in result.timings_ms.items()},
        reranked=result.reranked,
        reranker=service.reranker_name if result.reranked else None,
    )
