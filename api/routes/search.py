"""``POST /search``: the first stage over the served index, then (optionally) reranking."""

from __future__ import annotations

from dataclasses import replace

from fastapi import APIRouter, Request
from haystack.errors import FilterError
from starlette.concurrency import run_in_threadpool

from winnow.api.admission import release_rerank, rerank_scored, reserve_rerank
from winnow.api.dependencies import ERROR_RESPONSES, ServiceDep, check_filter_cost, fit_text
from winnow.api.errors import ApiError
from winnow.api.schemas import SearchHit, SearchRequest, SearchResponse
from winnow.retrieval.metadata_filter import validate_filters

router = APIRouter(tags=["search"])

FILTER_HINT = (
    "A condition is {field: 'meta.NAME', operator: '==' | '!=' | '>' | '>=' | '<' | '<=' | 'in' | 'not in', "
    "value}; combine conditions with {operator: 'AND' | 'OR' | 'NOT', conditions: [...]}."
)


@router.post("/search", response_model=SearchResponse, responses=ERROR_RESPONSES)
async def search(body: SearchRequest, service: ServiceDep, request: Request) -> SearchResponse:
    """The `first_stage` (dense, bm25 or hybrid; default hybrid when the index holds documents) over the
    index, restricted by `filters`, its top `candidates` reranked by the cross-encoder, the best `top_k`
    returned. `rerank: false` (or no reranker): the first stage's order. Hits give their dense and BM25
    ranks and, when reranked, how the cross-encoder read them (`reading`: whole, truncated at N tokens, or
    its best of K windows)."""
    settings = service.settings
    for name in ("top_k", "candidates"):
        value = getattr(body, name)
        if value is not None and value > settings.max_top_k:
            raise ApiError(422, f"{name} is {value}; the limit is {settings.max_top_k} (WINNOW_MAX_TOP_K)")
    if body.filters:  # {} is no filter
        check_filter_cost(body.filters, settings)  # size limits first: a huge filter is refused at once
        try:
            validate_filters(body.filters, required=True)
        except (ValueError, FilterError) as err:
            raise ApiError(422, f"filters: {err} {FILTER_HINT}") from None
    query = fit_text(body.query, settings.max_query_chars, "query", truncate=settings.long_text == "truncate")
    assert service.searcher is not None
    # the server's setting, else the reranker card's depth, else 100; never fewer than top_k
    candidates = body.candidates or service.searcher.candidates
    first_stage = body.first_stage or await run_in_threadpool(service.default_first_stage)
    # over the latency budget: 429 before any work; else the rerank work counts as queued from now on
    reranks = body.rerank and service.searcher.first_stage_only is None  # weight 0: the first stage's order
    reserved = reserve_rerank(service, max(candidates, body.top_k)) if reranks else 0
    try:  # the first stage in a thread; the reranker is awaited on the event loop, holding no thread
        stage = await run_in_threadpool(
            service.first_stage,
            query,
            top_k=body.top_k,
            candidates=candidates,
            rerank=body.rerank,
            filters=body.filters or None,
            first_stage=first_stage,
        )
    except BaseException:
        release_rerank(service, reserved)
        raise
    scores, readings = None, None
    if stage.rerank and stage.hits:
        scores, readings = await rerank_scored(request, service, query, stage.texts, reserved=reserved)
        if readings is not None and len(query) < len(body.query):  # cut here to the query character limit
            readings = [replace(r, query_truncated=True) for r in readings]
    else:
        release_rerank(service, reserved)
    result = service.searcher.finish(stage, scores, readings)
    return SearchResponse(
        results=[SearchHit(**hit.to_dict()) for hit in result.results],
        timings_ms={k: round(v, 3) for k, v in result.timings_ms.items()},
        reranked=result.reranked,
        reranker=service.reranker_name if result.reranked else None,
        first_stage=first_stage,
    )
