"""Rerank a caller's documents: ``POST /v2/rerank`` (Cohere v2's shape) and ``POST /rerank`` (TEI's).

Existing Cohere and TEI clients work by pointing their base URL here. Both routes score through the
micro-batcher, so concurrent requests share model calls.

What they return: pure cross-encoder scores, as Cohere and TEI define them. The caller sends no first-stage
scores, so nothing is interpolated; a document's score comes from its (query, document) pair alone. The
opt-in ``fusion`` field mixes in the order the documents were sent (a RAG client's retrieval order) with
:func:`rerank.interpolation.interpolate_with_order`. Every result says how its document was read
(``reading``: whole, truncated at N tokens, or its best of K windows).
"""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
from fastapi import APIRouter, Request

from winnow.api.admission import rerank_scored
from winnow.api.dependencies import ERROR_RESPONSES, ServiceDep, fit_text, fit_texts
from winnow.api.errors import ApiError
from winnow.api.schemas import (
    CohereRerankDocument,
    CohereRerankRequest,
    CohereRerankResponse,
    CohereRerankResult,
    ReadingOut,
    RerankFusion,
    TeiRank,
    TeiRerankRequest,
    reading_out,
)
from winnow.api.service import SearchService
from winnow.rerank.engine import sigmoid
from winnow.rerank.interpolation import interpolate_with_order

router = APIRouter(tags=["rerank"])

FUSION_DEFAULT_WEIGHT = 0.5
"""The weight ``fusion`` uses when the request gives none and the model's card records none."""


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
) -> tuple[np.ndarray, list[ReadingOut | None]]:
    """The cross-encoder's logits for ``texts`` and how each was read (a cut made here to fit the server's
    character limits is part of its reading)."""
    settings = service.settings
    fitted_query = fit_text(query, settings.max_query_chars, "query", truncate=truncate)
    fitted = fit_texts(texts, settings.max_document_chars, field, truncate=truncate, left=left)
    scored = await rerank_scored(request, service, fitted_query, fitted)
    query_cut = len(fitted_query) < len(query)
    readings = scored.readings or [None] * len(fitted)
    shown = [
        reading_out(reading, cut=len(kept) < len(text), query_cut=query_cut)
        for reading, kept, text in zip(readings, fitted, texts, strict=True)
    ]
    return scored.scores.astype(np.float64), shown


def _fusion(service: SearchService, fusion: RerankFusion | None) -> tuple[float, str] | None:
    """The weight ``fusion`` uses, and where it came from (``request``, ``card`` or ``default``)."""
    if fusion is None:
        return None
    if fusion.weight is not None:
        return fusion.weight, "request"
    card = None if service.engine is None else service.engine.interpolation_weight
    if card is not None:
        return float(card), "card"
    return FUSION_DEFAULT_WEIGHT, "default"


@router.post("/v2/rerank", response_model=CohereRerankResponse, responses=ERROR_RESPONSES)
async def cohere_rerank(
    body: CohereRerankRequest, service: ServiceDep, request: Request
) -> CohereRerankResponse:
    """Cohere v2 rerank: pure cross-encoder scores. `relevance_score` is sigmoid(logit) of the server's
    cross-encoder for each (query, document) pair, in [0, 1], independent of the other documents and of their
    order; no first-stage score is involved. Results are sorted by it, best first (ties in request order),
    and cut to `top_n`; `top_n` above the number of documents returns them all, as Cohere does (422 with
    WINNOW_STRICT_TOP_N=true). `model` is accepted and ignored: the server's reranker answers.
    `max_tokens_per_doc` is ignored: each result's `reading` says how its document was read (whole, truncated
    at N tokens, or scored by its best of K windows).

    winnow's extension `fusion: {"with": "client_order", "weight": w}` (opt-in) fuses the cross-encoder with
    the order the documents were sent in: `relevance_score = w * minmax(logits) + (1 - w) * (1 - i / (n - 1))`
    for the document at position i of n; `rerank_score` then holds the cross-encoder's sigmoid, and
    `meta.fusion` the weight used and its source (`request`, the model `card`, or the `default` 0.5)."""
    _check_reranker(service)
    texts = body.texts()
    _check_count(service, len(texts), "documents")
    top_n = body.top_n or len(texts)
    if top_n > len(texts) and service.settings.strict_top_n:
        raise ApiError(422, f"top_n is {top_n} but only {len(texts)} documents were sent")
    truncate = service.settings.long_text == "truncate"
    fusion = _fusion(service, body.fusion)
    logits, readings = await _scores(request, service, body.query, texts, "documents", truncate=truncate)
    relevance = sigmoid(logits)
    final = relevance if fusion is None else interpolate_with_order(logits, fusion[0])
    order = np.argsort(-(logits if fusion is None else final), kind="stable")[:top_n]
    results = [
        CohereRerankResult(
            index=int(i),
            relevance_score=float(final[i]),
            document=CohereRerankDocument(text=texts[i]) if body.return_documents else None,
            rerank_score=None if fusion is None else float(relevance[i]),
            reading=readings[i],
        )
        for i in order
    ]
    meta: dict[str, Any] = {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}}
    if fusion is not None:
        meta["fusion"] = {"with": "client_order", "weight": fusion[0], "source": fusion[1]}
    return CohereRerankResponse(id=str(uuid.uuid4()), results=results, meta=meta)


@router.post(
    "/rerank", response_model=list[TeiRank], response_model_exclude_none=True, responses=ERROR_RESPONSES
)
async def tei_rerank(body: TeiRerankRequest, service: ServiceDep, request: Request) -> list[TeiRank]:
    """Hugging Face TEI rerank: pure cross-encoder scores, every text with its score, best first (ties in
    request order). `score` is sigmoid(logit) of the server's cross-encoder for each (query, text) pair, in
    [0, 1], or the raw logit with `raw_scores: true`; it depends on that pair alone, no first-stage score is
    involved. A text over the server's character limit gets 413 unless `truncate: true` (or
    WINNOW_LONG_TEXT=truncate); `truncation_direction: Left` keeps its end. Each item's `reading` says how
    the cross-encoder read the text (whole, truncated at N tokens, or its best of K windows).

    winnow's extension `fusion: {"with": "client_order", "weight": w}` (opt-in) fuses the cross-encoder with
    the order the texts were sent in: `score = w * minmax(logits) + (1 - w) * (1 - i / (n - 1))` for the text
    at position i of n, in [0, 1]; `rerank_score` then holds the cross-encoder's own score. `w` defaults to
    the model card's interpolation weight, else 0.5."""
    _check_reranker(service)
    _check_count(service, len(body.texts), "texts")
    truncate = bool(body.truncate) or service.settings.long_text == "truncate"
    left = body.truncation_direction.lower() == "left"
    fusion = _fusion(service, body.fusion)
    logits, readings = await _scores(
        request, service, body.query, body.texts, "texts", truncate=truncate, left=left
    )
    scores = logits if body.raw_scores else sigmoid(logits)
    final = scores if fusion is None else interpolate_with_order(logits, fusion[0])
    order = np.argsort(-(logits if fusion is None else final), kind="stable")
    return [
        TeiRank(
            index=int(i),
            score=float(final[i]),
            text=body.texts[i] if body.return_text else None,
            rerank_score=None if fusion is None else float(scores[i]),
            reading=readings[i],
        )
        for i in order
    ]
