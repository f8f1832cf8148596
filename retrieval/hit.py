"""A first-stage result and the helpers that reshape result lists."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Hit:
    """One retrieved passage with its score (higher is better)."""

    id: str
    score: float
    text: str = ""
    title: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    parent_id: str | None = None

    @property
    def doc_id(self) -> str:
        """The source document's id (the passage id when it is not a chunk)."""
        return self.parent_id or self.id

    def full_text(self) -> str:
        """Title and text, as the embedder and the reranker read them."""
        return f"{self.title}. {self.text}" if self.title else self.text

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "doc_id": self.doc_id,
            "score": self.score,
            "title": self.title,
            "text": self.text,
            "meta": self.meta,
        }


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
            meta={**h.meta, "best_chunk": h.id} if h.parent_id else h.meta,
            parent_id=None,
        )
        for doc_id, h in best.items()
    ]
    collapsed.sort(key=lambda h: h.score, reverse=True)
    return collapsed
