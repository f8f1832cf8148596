"""Haystack component: hybrid (dense + BM25, RRF) retrieval from a ``WinnowDocumentStore``."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from collections.abc import Sequence
from typing import Any

from haystack import Document, component, default_from_dict, default_to_dict
from haystack.document_stores.types import FilterPolicy, apply_filter_policy

from winnow.retrieval.document_store import WinnowDocumentStore, record_to_document
from winnow.retrieval.embedder import Embedder
from winnow.retrieval.embedding_retriever import _check_top_k
from winnow.retrieval.first_stage import bm25_from_index, make_first_stage
from winnow.retrieval.hit import Hit
from winnow.retrieval.hybrid import HybridRetriever
from winnow.retrieval.metadata_filter import matching_document_ids

logger = logging.getLogger(__name__)

__all__ = ["RANK_KEYS", "WinnowHybridRetriever"]

RANK_KEYS = {"dense": "dense_rank", "bm25": "bm25_rank"}  # retriever name -> meta key of its rank


@component
class WinnowHybridRetriever:
    """Hybrid retrieval over a ``WinnowDocumentStore``: dense (FAISS) and BM25, fused by reciprocal rank.

    The fusion is the one ``winnow search --first-stage hybrid`` and ``POST /search`` use
    (:func:`retrieval.first_stage.make_first_stage`, :func:`retrieval.hybrid.reciprocal_rank_fusion`), so the
    same query on the same index ranks the same on every path, whatever order the two retrievers answer in.
    Each document's ``score`` is its RRF score and its ``meta`` carries ``dense_rank`` and ``bm25_rank``
    (1-based; ``None`` when that retriever did not return it). The component embeds the query itself
    (``model``, by default the store's embedder), so it takes the query text. BM25 is built over the
    store's documents at :meth:`warm_up` and rebuilt on the next run after the store changes.

    ### Usage example
    ```python
    store = WinnowDocumentStore(index_path="my-index")
    retriever = WinnowHybridRetriever(document_store=store, top_k=5)
    retriever.warm_up()
    documents = retriever.run(query="net revenue 2023")["documents"]
    ```
    """

    def __init__(
        self,
        *,
        document_store: WinnowDocumentStore,
        model: str | None = None,
        device: str | None = None,
        filters: dict[str, Any] | None = None,
        top_k: int = 10,
        rrf_k: int = 60,
        depth: int = 100,
        filter_policy: FilterPolicy | str = FilterPolicy.REPLACE,
    ) -> None:
        """
        :param document_store: The store to search.
        :param model: Bi-encoder that embeds the query; ``None`` uses the store's ``embedder`` (it must be
            the model that embedded the documents).
        :param device: ``"cpu"``, ``"cuda"``...; ``None`` picks one.
        :param filters: Haystack filters applied to every search (see ``filter_policy``).
        :param top_k: Maximum number of documents to return; must be greater than 0.
        :param rrf_k: RRF's constant ``k`` in ``1 / (k + rank)`` (60, as the CLI and REST service).
        :param depth: Candidates each retriever contributes to the fusion (at least ``top_k``; 100, as the
            CLI and REST service: fusing shorter lists ranks differently).
        :param filter_policy: ``REPLACE`` (run-time filters replace the init filters) or ``MERGE``.
        :raises TypeError: if ``document_store`` is not a ``WinnowDocumentStore``.
        :raises ValueError: for ``top_k``, ``depth`` or ``rrf_k`` out of range.
        """
        if not isinstance(document_store, WinnowDocumentStore):
            raise TypeError(
                f"document_store must be a WinnowDocumentStore, got {type(document_store).__name__}"
            )
        if isinstance(rrf_k, bool) or not isinstance(rrf_k, int) or rrf_k < 0:
            raise ValueError(f"rrf_k must be an integer >= 0, got {rrf_k!r}")
        self.document_store = document_store
        self.model = model
        self.device = device
        self.filters = filters
        self.top_k = _check_top_k(top_k)
        self.depth = _check_top_k(depth)
        self.rrf_k = rrf_k
        self.filter_policy = (
            filter_policy if isinstance(filter_policy, FilterPolicy) else FilterPolicy.from_str(filter_policy)
        )
        self._embedder: Embedder | None = None
        self._hybrid: HybridRetriever | None = None
        self._built_for: tuple[int, int, int] | None = None
        self._lock = threading.Lock()

    def _get_telemetry_data(self) -> dict[str, Any]:
        return {"document_store": type(self.document_store).__name__}

    def to_dict(self) -> dict[str, Any]:
        """Serialises the component (the document store included)."""
        return default_to_dict(
            self,
            document_store=self.document_store,
            model=self.model,
            device=self.device,
            filters=self.filters,
            top_k=self.top_k,
            rrf_k=self.rrf_k,
            depth=self.depth,
            filter_policy=self.filter_policy.value,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WinnowHybridRetriever:
        """Builds the component from :meth:`to_dict` output (``data`` is not modified). ``Pipeline.loads``
        needs ``allowed_modules=["winnow"]`` to import this class."""
        init_parameters = dict(data.get("init_parameters", {}))
        store = init_parameters.get("document_store")
        if isinstance(store, dict):
            init_parameters["document_store"] = WinnowDocumentStore.from_dict(store)
        return default_from_dict(cls, {**data, "init_parameters": init_parameters})

    def warm_up(self) -> None:
        """Load the query embedder and build BM25 over the store's documents; idempotent."""
        if self._embedder is None:
            self._embedder = Embedder(
                self.model or self.document_store.embedder, device=self.device, show_progress=False
            ).load()
        self._first_stage()

    def _first_stage(self) -> HybridRetriever | None:
        """The fused retriever over the store's current index (None when it holds no documents), rebuilt
        when the store's table has changed since it was built."""
        index = self.document_store.index
        if index is None or not index.table.count():
            return None
        state = (id(index), id(index.table), index.table.changes)
        with self._lock:
            if self._hybrid is None or self._built_for != state:
                if self._embedder is None:
                    raise RuntimeError("WinnowHybridRetriever is not warmed up; call warm_up() first")
                bm25 = bm25_from_index(index)
                hybrid = make_first_stage(
                    "hybrid", index, self._embedder, rrf_k=self.rrf_k, depth=self.depth, bm25=bm25
                )
                assert isinstance(hybrid, HybridRetriever)
                self._hybrid, self._built_for = hybrid, state
            return self._hybrid

    def _resolve_filters(self, filters: dict[str, Any] | None) -> dict[str, Any] | None:
        if filters is not None and not filters and self.filter_policy == FilterPolicy.REPLACE:
            return None
        return apply_filter_policy(self.filter_policy, self.filters, filters)

    def _to_documents(self, hits: Sequence[Hit]) -> list[Document]:
        index = self.document_store.index
        assert index is not None
        records = index.table.get([h.id for h in hits], with_embedding=False)
        documents = []
        for hit, record in zip(hits, records, strict=True):
            if record is None:  # a chunk whose parent is not stored: the hit itself
                title = {"title": hit.title} if hit.title else {}
                doc = Document(id=hit.id, content=hit.text, meta={**hit.meta, **title})
            else:
                doc = record_to_document(record, with_embedding=False)
            meta = {**doc.meta, **{key: hit.ranks.get(name) for name, key in RANK_KEYS.items()}}
            if "best_chunk" in hit.meta:
                meta["best_chunk"] = hit.meta["best_chunk"]
            documents.append(dataclasses.replace(doc, score=hit.score, meta=meta))
        return documents

    @component.output_types(documents=list[Document])
    def run(
        self, query: str, filters: dict[str, Any] | None = None, top_k: int | None = None
    ) -> dict[str, list[Document]]:
        """Retrieve the documents that best match ``query`` by RRF of dense and BM25 rankings.

        :param query: The query text.
        :param filters: Filters for this run, combined with the init filters by ``filter_policy``; they
            restrict both retrievers, so ``top_k`` documents come back whenever that many match.
        :param top_k: Maximum number of documents for this run (> 0).
        :returns: ``{"documents": [...]}``, best first, each with its RRF ``score`` and its ``dense_rank``
            and ``bm25_rank`` in ``meta``.
        :raises ValueError: for an empty query, ``top_k <= 0`` or malformed filters.
        """
        if not isinstance(query, str) or not query.strip():
            raise ValueError("query must be a non-empty string")
        top_k = self.top_k if top_k is None else _check_top_k(top_k)
        filters = self._resolve_filters(filters)
        if self._embedder is None:
            self.warm_up()
        hybrid = self._first_stage()
        if hybrid is None:
            logger.warning("No documents in the store; returning no documents")
            return {"documents": []}
        allow_ids = None
        if filters:
            assert self.document_store.index is not None
            allow_ids = matching_document_ids(self.document_store.index, filters)
            if not allow_ids:
                return {"documents": []}
        hits = hybrid.retrieve(query, top_k, allow_ids=allow_ids)
        return {"documents": self._to_documents(hits)}

    @component.output_types(documents=list[Document])
    async def run_async(
        self, query: str, filters: dict[str, Any] | None = None, top_k: int | None = None
    ) -> dict[str, list[Document]]:
        """Async :meth:`run` (the search runs in a worker thread)."""
        return await asyncio.to_thread(self.run, query, filters, top_k)
