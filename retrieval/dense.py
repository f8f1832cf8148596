"""Dense first stage: embed the query, search the FAISS index, return passages (or documents)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

from winnow.indexes import EmbedderMismatchError, WinnowIndex
from winnow.retrieval.embedder import Embedder
from winnow.retrieval.hit import Hit, collapse_to_documents
from winnow.retrieval.records import record_to_hit

logger = logging.getLogger(__name__)


class DenseRetriever:
    """Bi-encoder retrieval over a ``WinnowIndex`` built with the same embedder.

    When the index holds chunks, ``collapse_chunks`` (default) returns documents scored by their best chunk,
    with the whole document's text where the index stores it (``build_index`` does), so a reranker reads the
    full page and not only the chunk that matched.
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
            raise EmbedderMismatchError(
                index_embedder=index.embedder, requested_embedder=self.embedder.name, path="(in memory)"
            )
        self.collapse_chunks = collapse_chunks and bool(index.extra.get("chunked", False))
        self.chunk_overfetch = chunk_overfetch

    def retrieve(self, query: str, top_k: int = 10, *, allow_ids: Sequence[str] | None = None) -> list[Hit]:
        """The ``top_k`` best hits for one query, optionally restricted to the documents in ``allow_ids``."""
        return self.retrieve_batch([query], top_k, allow_ids=allow_ids)[0]

    def retrieve_batch(
        self, queries: Sequence[str], top_k: int = 10, *, allow_ids: Sequence[str] | None = None
    ) -> list[list[Hit]]:
        """``retrieve`` for many queries: one embedding batch, one index search (more while chunks crowd)."""
        if top_k <= 0:
            raise ValueError(f"top_k must be positive, got {top_k}")
        if not queries:
            return []
        vectors = self.embedder.embed_queries(list(queries))
        if allow_ids is not None and self.collapse_chunks:
            allow_ids = [*allow_ids, *self.index.table.ids_for_parent(allow_ids)]
        if not self.collapse_chunks:
            rows = self.index.search(vectors, top_k, allow_doc_ids=allow_ids)
            return [[record_to_hit(r, s) for r, s in row] for row in rows]
        return [self._documents(vectors[i : i + 1], top_k, allow_ids) for i in range(len(queries))]

    def _documents(self, vector, top_k: int, allow_ids: Sequence[str] | None) -> list[Hit]:
        """Search chunks, widening the search until ``top_k`` distinct documents (or all) are found."""
        fetch = top_k * self.chunk_overfetch
        while True:
            row = self.index.search(vector, fetch, allow_doc_ids=allow_ids)[0]
            docs = collapse_to_documents(record_to_hit(r, s) for r, s in row)
            if len(docs) >= top_k or len(row) < fetch:
                break
            fetch *= 2
        return self._with_document_text(docs[:top_k])

    def _with_document_text(self, hits: list[Hit]) -> list[Hit]:
        parents = self.index.table.get([h.id for h in hits], with_embedding=False)
        return [
            h if p is None else replace(h, text=p.text or h.text) for h, p in zip(hits, parents, strict=True)
        ]
