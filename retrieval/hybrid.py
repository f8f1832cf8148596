"""Hybrid first stage: reciprocal rank fusion (RRF) of several retrievers' rankings."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from winnow.retrieval.hit import Hit, Retriever

logger = logging.getLogger(__name__)


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[Hit]], *, k: int = 60, top_k: int | None = None
) -> list[Hit]:
    """Fuse rankings by ``sum(1 / (k + rank))`` over the lists a document appears in (Cormack et al., 2009).

    Hits are matched by ``doc_id``; the fused hit keeps the first list's text and metadata.
    """
    if k < 0:
        raise ValueError(f"RRF k must be >= 0, got {k}")
    fused: dict[str, float] = {}
    first_seen: dict[str, Hit] = {}
    for ranking in rankings:
        for rank, hit in enumerate(ranking, start=1):
            fused[hit.doc_id] = fused.get(hit.doc_id, 0.0) + 1.0 / (k + rank)
            first_seen.setdefault(hit.doc_id, hit)
    order = sorted(fused, key=lambda doc_id: fused[doc_id], reverse=True)
    if top_k is not None:
        order = order[:top_k]
    out = []
    for doc_id in order:
        hit = first_seen[doc_id]
        out.append(Hit(id=doc_id, score=fused[doc_id], text=hit.text, title=hit.title, meta=hit.meta))
    return out


class HybridRetriever:
    """RRF over several retrievers (e.g. dense + BM25), each asked for ``depth`` candidates."""

    name = "hybrid"

    def __init__(self, retrievers: Sequence[Retriever], *, k: int = 60, depth: int = 100) -> None:
        if len(retrievers) < 2:
            raise ValueError("HybridRetriever needs at least two retrievers to fuse")
        self.retrievers = list(retrievers)
        self.k = k
        self.depth = depth

    def retrieve(self, query: str, top_k: int = 10) -> list[Hit]:
        return self.retrieve_batch([query], top_k)[0]

    def retrieve_batch(self, queries: Sequence[str], top_k: int = 10) -> list[list[Hit]]:
        depth = max(self.depth, top_k)
        per_retriever = [r.retrieve_batch(queries, depth) for r in self.retrievers]
        return [
            reciprocal_rank_fusion([rankings[i] for rankings in per_retriever], k=self.k, top_k=top_k)
            for i in range(len(queries))
        ]
