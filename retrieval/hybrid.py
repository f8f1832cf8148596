"""Hybrid first stage: reciprocal rank fusion (RRF) of several retrievers' rankings."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

from winnow.retrieval.hit import Hit, Retriever

logger = logging.getLogger(__name__)


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[Hit]],
    *,
    k: int = 60,
    top_k: int | None = None,
    names: Sequence[str] | None = None,
) -> list[Hit]:
    """Fuse rankings by ``sum(1 / (k + rank))`` over the lists a document appears in (Cormack et al., 2009).

    Hits are matched by ``doc_id`` (a document listed twice in one ranking counts once, at its best rank).
    The result does not depend on the order of ``rankings``: scores are summed exactly (``math.fsum``), and
    retrievers are taken in a fixed priority (``dense``, then ``bm25``, then others by name): tied documents
    follow the first retriever's ranks, then the next one's (documents it lacks last), then ``doc_id``, which
    is the order fusing ``[dense, bm25]`` has always produced; the fused hit takes its text and title from the
    first retriever that found it and merges the metadata of all (that one's values win). ``names``
    (default ``"0"``, ``"1"``, ...) label the rankings in each fused hit's ``ranks``; where two rankings share
    a name, the better rank is kept.
    """
    if k < 0:
        raise ValueError(f"RRF k must be >= 0, got {k}")
    labels = [str(i) for i in range(len(rankings))] if names is None else list(names)
    if len(labels) != len(rankings):
        raise ValueError(f"{len(labels)} names for {len(rankings)} rankings")
    found: dict[str, list[tuple[str, int, Hit]]] = {}  # doc_id -> (name, rank, hit) per ranking
    for name, ranking in zip(labels, rankings, strict=True):
        seen: set[str] = set()
        for rank, hit in enumerate(ranking, start=1):
            if hit.doc_id not in seen:
                seen.add(hit.doc_id)
                found.setdefault(hit.doc_id, []).append((name, rank, hit))
    fused = {doc: math.fsum(1.0 / (k + rank) for _, rank, _ in entries) for doc, entries in found.items()}
    priority = sorted(set(labels), key=_priority)

    def tie_key(doc_id: str) -> tuple:
        best = {name: rank for name, rank, _ in sorted(found[doc_id], key=lambda e: -e[1])}
        return (-fused[doc_id], *(best.get(name, math.inf) for name in priority), doc_id)

    order = sorted(found, key=tie_key)
    if top_k is not None:
        order = order[:top_k]
    out = []
    for doc_id in order:
        entries = sorted(found[doc_id], key=lambda e: (_priority(e[0]), e[1]))  # by priority, then rank
        first = entries[0][2]
        meta: dict = {}
        for _, _, hit in reversed(entries):
            meta.update(hit.meta)
        ranks: dict[str, int] = {}
        for name, rank, _ in entries:
            ranks[name] = min(rank, ranks.get(name, rank))
        out.append(
            Hit(id=doc_id, score=fused[doc_id], text=first.text, title=first.title, meta=meta, ranks=ranks)
        )
    return out


_TIE_PRIORITY = ("dense", "bm25")


def _priority(name: str) -> tuple[int, str]:
    """Sort key of a retriever name: ``dense``, ``bm25``, then the others by name."""
    return (_TIE_PRIORITY.index(name) if name in _TIE_PRIORITY else len(_TIE_PRIORITY), name)


class HybridRetriever:
    """RRF over several retrievers (e.g. dense + BM25), each asked for ``depth`` candidates.

    Each fused hit's ``ranks`` holds the rank every retriever (by its ``name``) gave it. The fused ranking
    does not depend on the order of ``retrievers`` (see :func:`reciprocal_rank_fusion`).
    """

    name = "hybrid"

    def __init__(self, retrievers: Sequence[Retriever], *, k: int = 60, depth: int = 100) -> None:
        if len(retrievers) < 2:
            raise ValueError("HybridRetriever needs at least two retrievers to fuse")
        self.retrievers = list(retrievers)
        self.k = k
        self.depth = depth

    def retrieve(self, query: str, top_k: int = 10, *, allow_ids: Sequence[str] | None = None) -> list[Hit]:
        return self.retrieve_batch([query], top_k, allow_ids=allow_ids)[0]

    def retrieve_batch(
        self, queries: Sequence[str], top_k: int = 10, *, allow_ids: Sequence[str] | None = None
    ) -> list[list[Hit]]:
        """Fused hits per query; ``allow_ids`` restricts every retriever to those documents (each retriever
        must then accept ``allow_ids``, as ``DenseRetriever`` and ``BM25Retriever`` do)."""
        depth = max(self.depth, top_k)
        restrict = {} if allow_ids is None else {"allow_ids": allow_ids}
        per_retriever = [r.retrieve_batch(queries, depth, **restrict) for r in self.retrievers]
        names = [str(getattr(r, "name", i)) for i, r in enumerate(self.retrievers)]
        return [
            reciprocal_rank_fusion(
                [rankings[i] for rankings in per_retriever], k=self.k, top_k=top_k, names=names
            )
            for i in range(len(queries))
        ]
