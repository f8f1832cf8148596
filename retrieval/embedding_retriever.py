"""Haystack component: embedding retrieval from a :class:`~retrieval.document_store.WinnowDocumentStore`."""

from __future__ import annotations

import logging
from typing import Any

from haystack import Document, component, default_from_dict, default_to_dict
from haystack.document_stores.types import FilterPolicy, apply_filter_policy

from winnow.retrieval.document_store import WinnowDocumentStore
from winnow.retrieval.legacy_names import register_legacy_name, upgrade_legacy_type

logger = logging.getLogger(__name__)


def _check_top_k(top_k: Any) -> int:
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k <= 0:
        raise ValueError(f"top_k must be an integer greater than 0, but got {top_k!r}")
    return top_k


@component
class WinnowEmbeddingRetriever:
    """Retrieves the documents nearest a query embedding from a ``WinnowDocumentStore`` (FAISS search).

    Filters restrict the FAISS search to the matching documents, so ``top_k`` documents come back whenever
    that many match. Run-time arguments override the init values whenever they are given, falsy ones
    included (``scale_score=False``; ``filters={}`` under ``REPLACE`` searches without filters); ``top_k``
    must be greater than 0.

    ### Usage example
    ```python
    store = WinnowDocumentStore(index_path="my-index")
    retriever = WinnowEmbeddingRetriever(document_store=store, top_k=5)
    documents = retriever.run(query_embedding=embedding)["documents"]
    ```
    """

    def __init__(
        self,
        *,
        document_store: WinnowDocumentStore,
        filters: dict[str, Any] | None = None,
        top_k: int = 10,
        scale_score: bool = False,
        return_embedding: bool = False,
        filter_policy: FilterPolicy | str = FilterPolicy.REPLACE,
    ) -> None:
        """
        :param document_store: The store to search.
        :param filters: Haystack filters applied to every search (see ``filter_policy``).
        :param top_k: Maximum number of documents to return; must be greater than 0.
        :param scale_score: Scale scores to [0, 1] (cosine ``(s + 1) / 2``) instead of returning raw scores.
        :param return_embedding: Return the documents' embeddings too.
        :param filter_policy: ``REPLACE`` (run-time filters replace the init filters) or ``MERGE`` (combined).
        :raises TypeError: if ``document_store`` is not a ``WinnowDocumentStore``.
        :raises ValueError: if ``top_k`` is not greater than 0.
        """
        if not isinstance(document_store, WinnowDocumentStore):
            raise TypeError(
                f"document_store must be a WinnowDocumentStore, got {type(document_store).__name__}; "
                f"use the retriever that belongs to that store"
            )
        self.document_store = document_store
        self.filters = filters
        self.top_k = _check_top_k(top_k)
        self.scale_score = scale_score
        self.return_embedding = return_embedding
        self.filter_policy = (
            filter_policy if isinstance(filter_policy, FilterPolicy) else FilterPolicy.from_str(filter_policy)
        )

    def _get_telemetry_data(self) -> dict[str, Any]:
        return {"document_store": type(self.document_store).__name__}

    def to_dict(self) -> dict[str, Any]:
        """Serialises the component (the document store included)."""
        return default_to_dict(
            self,
            document_store=self.document_store,
            filters=self.filters,
            top_k=self.top_k,
            scale_score=self.scale_score,
            return_embedding=self.return_embedding,
            filter_policy=self.filter_policy.value,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WinnowEmbeddingRetriever:
        """Builds the component from :meth:`to_dict` output (``data`` is not modified).

        The document store is rebuilt with ``WinnowDocumentStore.from_dict`` directly, so it needs no entry in
        Haystack's deserialization allowlist. ``Pipeline.loads`` still needs ``allowed_modules=["winnow"]``
        to import this component's class.
        """
        data = upgrade_legacy_type(data, cls)
        init_parameters = dict(data.get("init_parameters", {}))
        store = init_parameters.get("document_store")
        if isinstance(store, dict):
            init_parameters["document_store"] = WinnowDocumentStore.from_dict(store)
        return default_from_dict(cls, {**data, "init_parameters": init_parameters})

    def _resolve_filters(self, filters: dict[str, Any] | None) -> dict[str, Any] | None:
        """``filters`` combined with the init filters; an explicit ``{}`` under REPLACE means no filter
        (``apply_filter_policy`` alone would fall back to the init filters)."""
        if filters is not None and not filters and self.filter_policy == FilterPolicy.REPLACE:
            return None
        return apply_filter_policy(self.filter_policy, self.filters, filters)

    def _arguments(
        self,
        query_embedding: list[float],
        filters: dict[str, Any] | None,
        top_k: int | None,
        scale_score: bool | None,
        return_embedding: bool | None,
    ) -> dict[str, Any]:
        return {
            "query_embedding": query_embedding,
            "filters": self._resolve_filters(filters),
            "top_k": self.top_k if top_k is None else _check_top_k(top_k),
            "scale_score": self.scale_score if scale_score is None else scale_score,
            "return_embedding": self.return_embedding if return_embedding is None else return_embedding,
        }

    def warm_up(self) -> None:
        """Nothing to load: the document store is ready when built. Present for pipeline symmetry."""

    @component.output_types(documents=list[Document])
    def run(
        self,
        query_embedding: list[float],
        filters: dict[str, Any] | None = None,
        top_k: int | None = None,
        scale_score: bool | None = None,
        return_embedding: bool | None = None,
    ) -> dict[str, list[Document]]:
        """Retrieve the documents nearest ``query_embedding``.

        :param query_embedding: Embedding of the query (same model and dimension as the documents').
        :param filters: Filters for this run, combined with the init filters by ``filter_policy``.
        :param top_k: Maximum number of documents for this run (> 0).
        :param scale_score: Overrides the init ``scale_score``.
        :param return_embedding: Overrides the init ``return_embedding``.
        :returns: ``{"documents": [...]}``, best first, each with ``score`` set.
        :raises ValueError: for ``top_k <= 0`` or a query embedding of the wrong dimension.
        """
        documents = self.document_store.embedding_retrieval(
            **self._arguments(query_embedding, filters, top_k, scale_score, return_embedding)
        )
        return {"documents": documents}

    @component.output_types(documents=list[Document])
    async def run_async(
        self,
        query_embedding: list[float],
        filters: dict[str, Any] | None = None,
        top_k: int | None = None,
        scale_score: bool | None = None,
        return_embedding: bool | None = None,
    ) -> dict[str, list[Document]]:
        """Async :meth:`run` (the search runs in a worker thread)."""
        documents = await self.document_store.embedding_retrieval_async(
            **self._arguments(query_embedding, filters, top_k, scale_score, return_embedding)
        )
        return {"documents": documents}


register_legacy_name(WinnowEmbeddingRetriever)  # pipelines saved before the move to winnow.*
