"""Request and response bodies of the REST service (kept apart from the routes that use them).

``/v2/rerank`` mirrors Cohere's v2 rerank API and ``/rerank`` Hugging Face TEI's, so their clients work by
changing only the base URL; both accept and ignore fields they do not use. winnow's own routes refuse unknown
fields, so a typo is an error rather than a silently ignored option.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from winnow.rerank.reading import Reading

MAX_ID_CHARS = 512
MAX_META_BYTES = 64 * 1024


def _encodable(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError(
            f"text holds characters that are not valid Unicode (a lone surrogate at position {err.start})"
        ) from None
    return text


Text = Annotated[str, AfterValidator(_encodable)]
"""A str that encodes to UTF-8 (JSON can smuggle in lone surrogates such as ``"\\ud800"``)."""


NOT_BLANK = r"\S"
Query = Annotated[str, StringConstraints(min_length=1, pattern=NOT_BLANK), AfterValidator(_encodable)]
"""A non-blank str (the schema says so too: at least one non-whitespace character)."""


def _check_json_value(value: Any, path: str, depth: int = 0) -> None:
    if depth > 16:
        raise ValueError(f"{path} is nested more than 16 levels deep")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{path} is {value}; JSON numbers must be finite")
    if isinstance(value, str):
        _encodable(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_json_value(item, f"{path}.{key}", depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_json_value(item, f"{path}[{i}]", depth + 1)


def _check_meta(meta: dict[str, Any]) -> dict[str, Any]:
    if "title" in meta:
        raise ValueError("meta must not hold 'title'; send it as the document's title field")
    for key in meta:
        _encodable(key)
    _check_json_value(meta, "meta")
    if len(json.dumps(meta, ensure_ascii=False).encode("utf-8")) > MAX_META_BYTES:
        raise ValueError(f"meta is larger than {MAX_META_BYTES} bytes of JSON")
    return meta


def check_filter_values(filters: dict[str, Any] | None) -> dict[str, Any] | None:
    """Finite numbers, valid Unicode, at most 16 levels. It walks the whole filter, so the routes call it
    after the size limits (dependencies.check_filter_cost), not as a field validator."""
    if filters is not None:
        _check_json_value(filters, "filters")
    return filters


class ErrorResponse(BaseModel):
    """Every 4xx/5xx body. ``error`` + ``error_type`` is TEI's shape, ``message`` Cohere's."""

    error: str = Field(description="what is wrong, in words")
    error_type: str = Field(description="validation, not_found, too_large, unauthorized, overloaded, ...")
    message: str = Field(description="the same as `error`")
    detail: list[dict[str, Any]] | None = Field(None, description="one entry per invalid field")


# ---------------------------------------------------------------------- how a document was read
class ReadingOut(BaseModel):
    """How the cross-encoder read one document (``rerank.reading.Reading``). Present on every reranked
    document: `/v2/rerank` results, `/rerank` items and reranked `/search` hits."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "read": "windows",
                    "tokens": 120,
                    "document_tokens": 900,
                    "windows": 9,
                    "best_window": 4,
                    "complete": True,
                    "query_tokens": 7,
                    "query_truncated": False,
                }
            ]
        }
    )

    read: Literal["whole", "truncated", "windows"] = Field(
        description="`whole`: every token in one pair; `truncated`: only the first `tokens` tokens were read "
        "(the rest never reached the model); `windows`: split into `windows` overlapping windows scored on "
        "their own, the document's score being its best window's"
    )
    tokens: int = Field(
        description="document tokens per model input: all (whole), the first N kept (truncated: the room the "
        "server's max length leaves next to the query), each window's length (windows)"
    )
    document_tokens: int = Field(
        description="the document's length in tokens (a lower bound when `complete` is false because the "
        "text was cut in characters before tokenising)"
    )
    windows: int = Field(description="model inputs the document took (1 unless `read` is `windows`)")
    best_window: int | None = Field(
        None, description="0-based index, in document order, of the window that gave the score (windows only)"
    )
    complete: bool = Field(
        description="every part of the text reached the model; false when truncated, when the server's "
        "max_windows spread windows with gaps, or when the text was cut in characters first (the server's "
        "character limit with truncation, or the engine's bound of 8 characters per token)"
    )
    query_tokens: int = Field(description="query tokens in each pair")
    query_truncated: bool = Field(description="the query was cut to half of a pair's room to fit")


def reading_out(reading: Reading | None, *, cut: bool = False, query_cut: bool = False) -> ReadingOut | None:
    """A ``rerank.reading.Reading`` as the response shows it (None stays None); ``cut``/``query_cut``: the
    server cut the document / query in characters before scoring (``WINNOW_LONG_TEXT=truncate``)."""
    if reading is None:
        return None
    out = ReadingOut(**reading.to_dict())
    if cut:
        out.complete = False
    if query_cut:
        out.query_truncated = True
    return out


class RerankFusion(BaseModel):
    """Opt-in fusion of the cross-encoder's scores with the order the documents were sent in."""

    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, json_schema_extra={"examples": [{"with": "client_order"}]}
    )

    with_: Literal["client_order"] = Field(
        "client_order",
        alias="with",
        description="what to fuse with: `client_order`, the order of the request's documents (best first: in "
        "a RAG client, its retrieval order)",
    )
    weight: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="weight of the cross-encoder in `w * minmax(logits) + (1 - w) * minmax(-position)`: 1 is "
        "the pure reranker, 0 the order sent. Default: the interpolation weight in the served model's card "
        "(`winnow.json`), else 0.5",
    )


FUSION_DESCRIPTION = (
    "opt-in (absent: pure cross-encoder scores, as Cohere and TEI define them). Fuses the cross-encoder with "
    "the order the documents were sent in, which in a RAG client is its retrieval order: the document at "
    "position i of n gets the first-stage score -i, and per request `score = w * minmax(logits) + "
    "(1 - w) * minmax(-i)` = `w * minmax(logits) + (1 - w) * (1 - i / (n - 1))`, in [0, 1] (ties keep the "
    "order sent); the cross-encoder's own score is then in `rerank_score`"
)


# ---------------------------------------------------------------------- /search
FirstStageName = Literal["dense", "bm25", "hybrid"]
"""The first stages ``POST /search`` offers (``retrieval.first_stage.FIRST_STAGES``)."""


class SearchRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "query": "what drives revenue growth",
                    "top_k": 5,
                    "candidates": 50,
                    "rerank": True,
                    "first_stage": "hybrid",
                    "filters": {"field": "meta.year", "operator": ">=", "value": 2020},
                }
            ]
        },
    )

    query: Query = Field(description="the search text")
    top_k: int = Field(10, ge=1, description="results to return")
    candidates: int | None = Field(
        None, ge=1, description="first-stage candidates to rerank (default: the server's, at least top_k)"
    )
    rerank: bool = Field(True, description="rerank with the cross-encoder (when the server has one)")
    first_stage: FirstStageName | None = Field(
        None,
        description="first-stage retriever: `dense` (the index's bi-encoder), `bm25` (over the index's "
        "document table) or `hybrid` (reciprocal rank fusion, k=60, of the dense and BM25 top 100, as "
        "`winnow search --first-stage hybrid` does). Default: `hybrid` when the index holds documents, else "
        "`dense`; the response says which ran. `filters` apply to all three",
    )
    filters: dict[str, Any] | None = Field(
        None,
        description="Haystack metadata filter, e.g. {field: 'meta.year', operator: '>=', value: 2020}; at "
        "most max_filter_nodes conditions and max_filter_in_values values in its lists (server settings)",
    )


class SearchHit(BaseModel):
    id: str
    score: float = Field(description="final score: the reranker's when reranked, else the first stage's")
    first_stage_score: float
    rerank_score: float | None = Field(
        None, description="the cross-encoder's own score, when `score` interpolates it with the first stage"
    )
    rank: int
    first_stage_rank: int
    dense_rank: int | None = Field(
        None, description="its rank in the dense retriever's list (null: not in it, or a bm25 first stage)"
    )
    bm25_rank: int | None = Field(
        None, description="its rank in BM25's list (null: not in it, or a dense first stage)"
    )
    title: str
    text: str
    meta: dict[str, Any] = Field(description="the document's stored metadata")
    reading: ReadingOut | None = Field(
        None, description="how the cross-encoder read it (null when the results were not reranked)"
    )


class SearchResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "results": [
                        {
                            "id": "doc-7",
                            "score": 4.21,
                            "first_stage_score": 0.61,
                            "rank": 1,
                            "first_stage_rank": 3,
                            "dense_rank": 5,
                            "bm25_rank": 2,
                            "title": "Northwind 10-K 2021",
                            "text": "Revenue grew 12% on higher volumes ...",
                            "meta": {"year": 2021},
                        }
                    ],
                    "timings_ms": {"first_stage": 8.1, "rerank": 95.4, "total": 103.8},
                    "reranked": True,
                    "reranker": "winnow-general",
                    "first_stage": "hybrid",
                }
            ]
        }
    )

    results: list[SearchHit]
    timings_ms: dict[str, float]
    reranked: bool
    reranker: str | None
    first_stage: FirstStageName = Field(description="the first stage that ran (the request's or the default)")


# ---------------------------------------------------------------------- /v2/rerank (Cohere)
class CohereDocument(BaseModel):
    """Cohere v1 also took documents as ``{"text": ...}`` objects."""

    model_config = ConfigDict(extra="allow")
    text: Text


class CohereRerankRequest(BaseModel):
    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "model": "winnow-general",
                    "query": "What is the capital of the United States?",
                    "documents": [
                        "Carson City is the capital city of the American state of Nevada.",
                        "Washington, D.C. is the capital of the United States.",
                    ],
                    "top_n": 1,
                }
            ]
        },
    )

    model: str | None = Field(None, description="accepted for compatibility; the server's reranker answers")
    query: Query
    documents: list[Text | CohereDocument] = Field(
        min_length=1, description="texts to rank; with `fusion`, in the client's order, best first"
    )
    top_n: int | None = Field(None, ge=1, description="results to return (default: all)")
    max_tokens_per_doc: int | None = Field(
        None,
        ge=1,
        description="accepted for compatibility and ignored: the server's max length and windows apply (each "
        "result's `reading` says how its document was read)",
    )
    return_documents: bool = Field(False, description="v1: echo each document in its result")
    fusion: RerankFusion | None = Field(None, description="winnow's extension, " + FUSION_DESCRIPTION)

    def texts(self) -> list[str]:
        return [d if isinstance(d, str) else d.text for d in self.documents]


class CohereRerankDocument(BaseModel):
    text: str


class CohereRerankResult(BaseModel):
    index: int = Field(description="position of the document in the request")
    relevance_score: float = Field(
        description="without `fusion`: sigmoid(logit) of the server's cross-encoder for (query, document), "
        "in [0, 1], from that pair alone (no first-stage score, no dependence on the other documents); with "
        "`fusion`: the fused score, in [0, 1]. Results are sorted by it, best first, ties in request order"
    )
    document: CohereRerankDocument | None = None
    rerank_score: float | None = Field(
        None, description="with `fusion`: the cross-encoder's own sigmoid(logit); null without"
    )
    reading: ReadingOut | None = Field(None, description="how the cross-encoder read the document")


class CohereRerankResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "5d0ae8a4-3d6a-4d4b-9a0e-2b1f4b7d1c55",
                    "results": [
                        {
                            "index": 1,
                            "relevance_score": 0.98,
                            "reading": {
                                "read": "whole",
                                "tokens": 14,
                                "document_tokens": 14,
                                "windows": 1,
                                "best_window": None,
                                "complete": True,
                                "query_tokens": 9,
                                "query_truncated": False,
                            },
                        }
                    ],
                    "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}},
                }
            ]
        }
    )

    id: str
    results: list[CohereRerankResult]
    meta: dict[str, Any]


# ---------------------------------------------------------------------- /rerank (TEI)
class TeiRerankRequest(BaseModel):
    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "query": "What is Deep Learning?",
                    "texts": ["Deep Learning is not...", "Deep learning is..."],
                }
            ]
        },
    )

    query: Query
    texts: list[Text] = Field(
        min_length=1, description="texts to rank; with `fusion`, in the client's order, best first"
    )
    raw_scores: bool = Field(False, description="raw logits instead of sigmoid scores")
    return_text: bool = Field(False, description="echo each text in its result")
    truncate: bool | None = Field(
        None, description="cut texts over the server's limit instead of answering 413"
    )
    truncation_direction: Literal["Left", "Right", "left", "right"] = "Right"
    fusion: RerankFusion | None = Field(None, description="winnow's extension, " + FUSION_DESCRIPTION)


class TeiRank(BaseModel):
    index: int = Field(description="position of the text in the request")
    score: float = Field(
        description="without `fusion`: sigmoid(logit) of the server's cross-encoder for (query, text), in "
        "[0, 1], or the raw logit (any real, higher is more relevant) with `raw_scores: true`; from that "
        "pair alone, no first-stage score. With `fusion`: the fused score, in [0, 1]. Sorted best first, "
        "ties in request order"
    )
    text: str | None = None
    rerank_score: float | None = Field(
        None, description="with `fusion`: the cross-encoder's own score (sigmoid, or logit with raw_scores)"
    )
    reading: ReadingOut | None = Field(None, description="how the cross-encoder read the text")


# ---------------------------------------------------------------------- /documents
class DocumentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Text = Field(min_length=1, max_length=MAX_ID_CHARS)
    text: Text
    title: Text = ""
    meta: dict[str, Any] = Field(default_factory=dict)

    @field_validator("meta")
    @classmethod
    def _valid_meta(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _check_meta(value)

    @field_validator("id")
    @classmethod
    def _printable_id(cls, value: str) -> str:
        if any(ord(c) < 32 for c in value) or value != value.strip():
            raise ValueError("id must not hold control characters or surrounding whitespace")
        return value


class DocumentsWrite(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "documents": [
                        {
                            "id": "doc-7",
                            "title": "Northwind 10-K 2021",
                            "text": "Revenue grew 12% on higher volumes.",
                            "meta": {"year": 2021},
                        }
                    ]
                }
            ]
        },
    )

    documents: list[DocumentIn] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> DocumentsWrite:
        seen: set[str] = set()
        for i, doc in enumerate(self.documents):
            if doc.id in seen:
                raise ValueError(f"documents[{i}].id {doc.id!r} appears more than once in this request")
            seen.add(doc.id)
        return self


class DocumentsWritten(BaseModel):
    written: int = Field(description="documents inserted or replaced (durable when this returns)")
    ids: list[str]
    documents: int = Field(description="documents stored after the write")


class DocumentOut(BaseModel):
    id: str
    text: str
    title: str
    meta: dict[str, Any]


class DocumentDeleted(BaseModel):
    id: str
    deleted: bool


# ---------------------------------------------------------------------- health
class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    documents: int | None = None
    vectors: int | None = None
    embedder: str | None = None
    reranker: str | None = None
    reranker_backend: str | None = Field(
        None, description="the reranker's runtime: torch, or a CPU backend (onnx*, openvino*)"
    )
    reranker_backend_note: str | None = Field(
        None,
        description="set when the reranker runs fp32 although the default (auto) looked for the quantised "
        "backend its model card's quality check chose: why (the check failed, or it cannot run here)",
    )
    reranker_note: str | None = Field(
        None,
        description="set when /search keeps the first stage's order although a reranker is loaded (its model "
        "card's interpolation weight is 0): why, and what to do",
    )
