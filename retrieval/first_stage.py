"""Build any first stage (dense, BM25, hybrid) over one ``WinnowIndex``."""

from __future__ import annotations

from indexes import WinnowIndex
from retrieval.bm25 import BM25Retriever
from retrieval.dense import DenseRetriever
from retrieval.embedder import Embedder
from retrieval.hybrid import HybridRetriever
from retrieval.records import record_to_passage

FIRST_STAGES = ("dense", "bm25", "hybrid")


def bm25_from_index(index: WinnowIndex, **kwargs) -> BM25Retriever:
    """BM25 over the documents stored in the index's table (whole documents, not their chunks)."""
    documents = [
        record_to_passage(r) for r in index.table.iter_records(with_embedding=False) if not r.parent_id
    ]
    return BM25Retriever(documents, **kwargs)


def make_first_stage(
    kind: str, index: WinnowIndex, embedder: Embedder | None = None, *, rrf_k: int = 60, depth: int = 100
) -> DenseRetriever | BM25Retriever | HybridRetriever:
    """``dense``, ``bm25`` or ``hybrid`` (RRF of both) over ``index``."""
    if kind == "dense":
        return DenseRetriever(index, embedder)
    if kind == "bm25":
        return bm25_from_index(index)
    if kind == "hybrid":
        return HybridRetriever(
            [DenseRetriever(index, embedder), bm25_from_index(index)], k=rrf_k, depth=depth
        )
    raise ValueError(f"unknown first stage {kind!r}; choose one of {', '.join(FIRST_STAGES)}")
