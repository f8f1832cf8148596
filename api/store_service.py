"""The REST service over a PostgreSQL + pgvector store (``WINNOW_STORE=postgresql://...``).

The database is the source of truth: ``PUT``/``DELETE /documents`` write straight through to it (a write is
acknowledged once PostgreSQL committed it), and every search reads it, so any number of replicas can serve one
store. There is no write log or snapshot here: durability and replication are the database's job.

Concurrency: each worker thread uses its own store and so its own connection
(:class:`retrieval.store_uri.PerThreadStores`); concurrent searches never queue on one connection. Filters
go into SQL (``NOT`` rewritten by De Morgan's laws; an operator with no exact negation gets a 422).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from winnow.api.service import SearchService, StoredDocument, _load_reranker, _start_batcher
from winnow.api.settings import WinnowSettings
from winnow.rerank.micro_batcher import BatchCallback
from winnow.rerank.search import FirstStage
from winnow.retrieval.corpus import Passage
from winnow.retrieval.embedder import Embedder
from winnow.retrieval.first_stage import FIRST_STAGES
from winnow.retrieval.store_first_stage import (
    StoreDenseRetriever,
    document_to_passage,
    make_store_first_stage,
    write_passages,
)
from winnow.retrieval.store_uri import PerThreadStores, open_document_store, split_postgres_uri

logger = logging.getLogger(__name__)

__all__ = ["StoreSearchService"]


class StoreSearchService(SearchService):
    """:class:`api.service.SearchService` with the documents in a PostgreSQL store instead of an index
    directory: same routes, same reranking and admission; reads and writes go to the database."""

    def __init__(self, settings: WinnowSettings, *, on_batch: BatchCallback | None = None) -> None:
        super().__init__(settings, on_batch=on_batch)
        if settings.postgres_uri is None:
            raise ValueError("StoreSearchService needs settings.store = postgresql://...")
        self.store_name = settings.store_name
        self.stores: PerThreadStores | None = None
        lexical = split_postgres_uri(settings.postgres_uri)[1].get("lexical", "postgres")
        if lexical != "postgres":
            raise ValueError(
                f"winnow serve searches text with PostgreSQL full text (every replica sees every write); "
                f"?lexical={lexical} is for the command line only: drop it from the store URI"
            )

    def load(self) -> StoreSearchService:
        """Open the store (creating its table when missing), load the models, start the batcher."""
        s = self.settings
        uri = s.postgres_uri
        assert uri is not None
        if s.torch_threads:
            import torch

            torch.set_num_threads(s.torch_threads)
        recorded = None
        try:
            probe = open_document_store(uri, create=False)
        except FileNotFoundError:
            logger.info("no table yet in %s: it is created now, empty", self.store_name)
        else:
            recorded = probe.table_info().get("embedder")
            probe.close()
        self.embedder = Embedder(s.embedder or recorded, device=s.device, show_progress=False).load()
        embedder = self.embedder
        self.stores = PerThreadStores(
            lambda: open_document_store(uri, embedding_dim=embedder.dim, embedder=embedder.name)
        )
        if recorded is None:
            self.stores.first.record_embedder(embedder.name, embedder.dim)
        self.engine = _load_reranker(s)
        self.batcher = _start_batcher(s, self.engine, self._on_batch)
        self.searcher = self._two_stage(StoreDenseRetriever(self.stores, embedder))
        self._ready.set()
        logger.info(
            "serving %d documents from %s with %s%s",
            self.stores.first.count_documents(),
            self.store_name,
            embedder.name,
            f" and reranker {self.engine.model_name}" if self.engine is not None else ", no reranker",
        )
        return self

    def close(self) -> None:
        """Stop the batcher and close every connection."""
        self._ready.clear()
        if self.batcher is not None:
            self.batcher.close()
        if self.stores is not None:
            self.stores.close()

    def snapshot(self, *, force: bool = False) -> bool:
        """Nothing to save: every acknowledged write is committed in the database."""
        return False

    def snapshot_due(self) -> bool:
        return False

    def _store(self) -> Any:
        assert self.stores is not None
        return self.stores.get()

    # ------------------------------------------------------------------ reads
    def default_first_stage(self) -> str:
        """``dense``: PostgreSQL's full-text ranking has no IDF, and fused with dense it scored below dense
        alone on SciFact (docs/pgvector.md), so hybrid and bm25 are there when asked for, not by default."""
        return "dense"

    def first_stage(
        self,
        query: str,
        *,
        top_k: int,
        candidates: int,
        rerank: bool,
        filters: dict[str, Any] | None = None,
        first_stage: str | None = None,
    ) -> FirstStage:
        """The first stage over the store, ``filters`` applied in SQL, on this thread's connection."""
        kind = first_stage or self.default_first_stage()
        if kind not in FIRST_STAGES:
            raise ValueError(f"unknown first stage {kind!r}; choose one of {', '.join(FIRST_STAGES)}")
        assert self.stores is not None
        retriever = make_store_first_stage(kind, self.stores, self.embedder, filters=filters or None)
        return self._two_stage(retriever).retrieve(query, top_k=top_k, candidates=candidates, rerank=rerank)

    def get(self, doc_id: str) -> StoredDocument | None:
        found = self._store().filter_documents({"field": "id", "operator": "==", "value": doc_id})
        if not found:
            return None
        p = document_to_passage(found[0])
        return StoredDocument(id=p.id, text=p.text, title=p.title, meta=p.meta)

    def count(self) -> tuple[int, int]:
        """(documents, vectors): every stored document has its vector."""
        n = self._store().count_documents()
        return n, n

    # ------------------------------------------------------------------ writes
    def upsert(self, passages: Sequence[Passage]) -> int:
        """Embed and upsert into the database; committed when this returns. Blocking."""
        assert self.embedder is not None
        return write_passages(self._store(), passages, self.embedder, show_progress=False)

    def delete(self, doc_ids: Sequence[str]) -> int:
        """Delete documents; returns how many existed."""
        store = self._store()
        existing = [
            d.id for d in store.filter_documents({"field": "id", "operator": "in", "value": list(doc_ids)})
        ]
        if existing:
            store.delete_documents(existing)
        return len(existing)
