"""Rerank a caller's documents: ``POST /v2/rerank`` (Cohere v2's shape) and ``POST /rerank`` (TEI's).

Existing Cohere and TEI clients work by pointing their base URL here. Both routes score through the
micro-batcher, so concurrent requests share model calls.
"""

from __future__ import annotations

import uuid

import numpy as np
from fastapi import APIRouter, Request

from winnow.api.admission import rerank_scores
from winnow.api.dependencies import ERROR_RESPONSES, ServiceDep, fit_text, fit_texts
from winnow.api.errors import ApiError
from winnow.api.schemas import (
    CohereRerankDocument,
    CohereRerankRequest,
    CohereRerankResponse,
    CohereRerankResult,
    TeiRank,
    TeiRerankRequest,
)
from winnow.api.service import SearchService
from winnow.rerank.engine import sigmoid

router = APIRouter(tags=["rerank"])


def _check_reranker(service: SearchService) -> None:
    if service.batcher is None:
        raise ApiError(
            503,
            "this server has no reranker loaded (start it with --reranker MODEL)",
            error_type="no_reranker",
        )


def _check_count(service: SearchService, n: int, field: str) -> None:
    limit = service.settings.max_rerank_documents
    if n > limit:
        raise ApiError(
            422,
            f"{field} holds {n} documents; the limit is {limit} per request (WINNOW_MAX_RERANK_DOCUMENTS)",
        )


async def _scores(
    request: Request,
    service: SearchService,
    query: str,
    texts: list[str],
    field: str,
    *,
    truncate: bool,
    left: bool = False,
) -> np.ndarray:
    settings = service.settings
    query = fit_text(query, settings.max_query_chars, "query", truncate=truncate)
    texts = fit_texts(texts, settings.max_document_chars, field, truncate=truncate, left=left)
    return await rerank_scores(request, service, query, texts)


@router.post("/v2/rerank", response_model=CohereRerankResponse, responses=ERROR_RESPONSES)
async def cohere_rerank(
    body: CohereRerankRequest, service: ServiceDep, request: Request
) -> CohereRerankResponse:
    """Cohere v2 rerank. `relevance_score` is the sigmoid of the reranker's logit. `top_n` above the number
    of documents returns them all, as Cohere does (422 with WINNOW_STRICT_TOP_N=true). `model` is accepted and
    ignored: the server's reranker answers."""
    _check_reranker(service)
    texts = body.texts()
    _check_count(service, len(texts), "documents")
    top_n = body.top_n or len(texts)
    if top_n > len(texts) and service.settings.strict_top_n:
        raise ApiError(422, f"top_n is {top_n} but only {len(texts)} documents were sent")
    truncate = service.settings.long_text == "truncate"
    logits = await _scores(request, service, body.query, texts, "documents", truncate=truncate)
    order = np.argsort(-logits, kind="stable")[:top_n]
    relevance = sigmoid(logits.astype(np.float64))
    results = [
        CohereRerankResult(
            index=int(i),
            relevance_score=float(relevance[i]),
            document=CohereRerankDocument(text=texts[i]) if body.return_documents else None,
        )
        for i in order
    ]
    return CohereRerankResponse(
        id=str(uuid.uuid4()),
        results=results,
        meta={"api_version": {"version": "2"}, "billed_units": {"search_units": 1}},
    )


@router.post(
    "/rerank", response_model=list[TeiRank], response_model_exclude_none=True, responses=ERROR_RESPONSES
)
async def tei_rerank(body: TeiRerankRequest, service: ServiceDep, request: Request) -> list[TeiRank]:
    """Hugging Face TEI rerank: every text with its score, best first. Scores are sigmoid probabilities, or
    raw logits with `raw_scores: true`. A text over the server's character limit gets 413 unless
    `truncate: true` (or WINNOW_LONG_TEXT=truncate); `truncation_direction: Left` keeps its end."""
    _check_reranker(service)
    _check_count(service, len(body.texts), "texts")
    truncate = bool(body.truncate) or service.settings.long_text == "truncate"
    left = body.truncation_direction.lower() == "left"
    logits = await _scores(request, service, body.query, body.texts, "texts", truncate=truncate, left=left)
    scores = logits.astype(np.float64) if body.raw_scores else sigmoid(logits.astype(np.float64))
    order = np.argsort(-logits, kind="stable")
    return [
        TeiRank(index=int(i), score=float(scores[i]), text=body.texts[i] if body.return_text else None)
        for i in order
    ]
