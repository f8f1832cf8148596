"""A first-stage result and the helpers that reshape result lists."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from winnow.retrieval.corpus import Passage

FIRST_STAGES = ("dense", "bm25", "hybrid")  # the first stages every path offers (CLI, REST, Haystack)


@dataclass(frozen=True)
class Hit(Passage):
    """A retrieved passage with its score (higher is better).

    ``ranks``: where a fused (hybrid) hit came from, the 1-based rank each retriever gave it, by retriever
    name (``{"dense": 3, "bm25": 1}``); absent retrievers did not return it. Empty for a single retriever.
    """

    score: float = 0.0
    ranks: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "doc_id": self.doc_id,
            "score": self.score,
            "title": self.title,
            "text": self.text,
            "meta": self.meta,
        }


class Retriever(Protocol):
    """What every first stage (dense, BM25, hybrid, or a user's own) offers."""

    name: str

    def retrieve_batch(self, queries: Sequence[str], top_k: int = 10) -> list[list[Hit]]: ...


def collapse_to_documents(hits: Iterable[Hit]) -> list[Hit]:
    """Keep each document's best-scoring chunk, ordered by score; the hit's id becomes the document id."""
    best: dict[str, Hit] = {}
    for hit in hits:
        current = best.get(hit.doc_id)
        if current is None or hit.score > current.score:
            best[hit.doc_id] = hit
    collapsed = [
        Hit(
            id=doc_id,
            score=h.score,
            text=h.text,
            title=h.title,
            meta={**h.meta, "best_chunk": h.id} if h.parent_id else dict(h.meta),
        )
        for doc_id, h in best.items()
    ]
    collapsed.sort(key=lambda h: h.score, reverse=True)
    return collapsed
