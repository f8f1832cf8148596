"""Dense first stage: embed the query, search the FAISS index, return passages (or documents)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from indexes import DocumentRecord, WinnowIndex
from retrieval.embedder import Embedder
from retrieval.hit import Hit, collapse_to_documents

logger = logging.getLogger(__name__)

TITLE_KEY = "title"


def record_to_hit(record: DocumentRecord, score: float) -> Hit:
    """A table record as a ``Hit`` (the title travels in the record's metadata)."""
    meta = dict(record.meta)
    title = str(meta.pop(TITLE_KEY, "") or "")
    return Hit(
        id=record.id, score=float(score), text=record.text, title=title, meta=meta, parent_id=record.parent_id
    )


class DenseRetriever:
    """Bi-encoder retrieval over a ``WinnowIndex`` built with the same embedder.

    When the index holds chunks, ``collapse_chunks`` (default) returns documents scored by their best chunk.
    """

    name = "dense"

    def __init__(
        self,
        index: WinnowIndex,
        embedder: Embedder | None = None,
        *,
        collapse_chunks: bool = True,
        chunk_overfetch: int = 4,
    ) -> None:
        self.index = index
        self.embedder = embedder or Embedder(index.embedder)
        if self.embedder.name != index.embedder:
            raise ValueError(
                f"index was built with embedder {index.embedder!r} but the retriever uses "
                f"{self.embedder.name!r}; "
                "pass the same embedder or re-index"
            )
        self.collapse_chunks = collapse_chunks and bool(index.extra.get("chunked", False))
        self.chunk_overfetch = chunk_overfetch

    def retrieve(self, query: str, top_k: int = 10, *, allow_ids: Sequence[str] | None = None) -> list[Hit]:
        """The ``top_k`` best hits for one query, optionally restricted to ``allow_ids``."""
        return self.retrieve_batch([query], top_k, allow_ids=allow_ids)[0]

    def retrieve_batch(
        self, queries: Sequence[str], top_k: int = 10, *, allow_ids: Sequence[str] | None = None
    ) -> list[list[Hit]]:
        """``retrieve`` for many queries: one embedding batch, one index search."""
        if top_k <= 0:
            raise ValueError(f"top_k must be positive, got {top_k}")
        if not queries:
            return []
        vectors = self.embedder.embed_queries(list(queries))
        fetch = top_k * self.chunk_overfetch if self.collapse_chunks else top_k
        rows = self.index.search(vectors, fetch, allow_doc_ids=allow_ids)
        results = []
        for row in rows:
            hits = [record_to_hit(record, score) for record, score in row]
            if self.collapse_chunks:
                hits = collapse_to_documents(hits)
            results.append(hits[:top_k])
        return results
