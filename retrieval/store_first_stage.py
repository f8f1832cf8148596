"""First stages over a Haystack document store (PostgreSQL + pgvector, or any store with the same retrieval
methods): dense through the store's embedding retrieval, lexical through its full-text ranking (or bm25s built
over the store's documents), hybrid as winnow's RRF of both (:mod:`retrieval.hybrid`).

Filters are Haystack filters pushed down into the store (SQL for PostgreSQL), not a list of allowed ids.
``store`` arguments take a store or a :class:`retrieval.store_uri.PerThreadStores` (each call then uses the
calling thread's store, so concurrent searches run on separate connections).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

from haystack import Document
from tqdm.auto import tqdm

from winnow.retrieval.bm25 import BM25Retriever
from winnow.retrieval.corpus import Passage
from winnow.retrieval.embedder import Embedder
from winnow.retrieval.hit import FIRST_STAGES, Hit
from winnow.retrieval.hybrid import HybridRetriever
from winnow.retrieval.records import TITLE_KEY
from winnow.retrieval.store_uri import PerThreadStores

logger = logging.getLogger(__name__)

__all__ = [
    "LEXICAL",
    "StoreDenseRetriever",
    "StoreKeywordRetriever",
    "bm25_from_store",
    "document_to_passage",
    "make_store_first_stage",
    "passage_to_document",
    "write_passages",
]

LEXICAL = ("postgres", "bm25s")


def _current(store: Any) -> Any:
    return store.get() if isinstance(store, PerThreadStores) else store


def passage_to_document(passage: Passage, embedding: Sequence[float] | None = None) -> Document:
    """A Haystack ``Document`` for ``passage`` (title in ``meta["title"]``, as winnow's table keeps it)."""
    meta = dict(passage.meta)
    if passage.title:
        meta[TITLE_KEY] = passage.title
    return Document(
        id=passage.id,
        content=passage.text,
        meta=meta,
        embedding=None if embedding is None else list(embedding),
    )


def document_to_passage(document: Document) -> Passage:
    """The ``Passage`` a stored ``Document`` holds (title taken back out of ``meta``)."""
    meta = dict(document.meta or {})
    title = str(meta.pop(TITLE_KEY, "") or "")
    return Passage(id=document.id, text=document.content or "", title=title, meta=meta)


def _hit(document: Document) -> Hit:
    p = document_to_passage(document)
    return Hit(id=p.id, text=p.text, title=p.title, meta=p.meta, score=float(document.score or 0.0))


def _restrict(filters: dict[str, Any] | None, allow_ids: Sequence[str] | None) -> dict[str, Any] | None:
    if allow_ids is None:
        return filters
    ids = {"field": "id", "operator": "in", "value": list(allow_ids)}
    return ids if not filters else {"operator": "AND", "conditions": [filters, ids]}


class StoreDenseRetriever:
    """Dense retrieval over a store: embed the query, then the store's ``embedding_retrieval`` (winnow's FAISS
    store, Haystack's in-memory store) or ``_embedding_retrieval`` (pgvector: HNSW with iterative scans,
    filters in SQL). Returns :class:`Hit` objects scored by cosine similarity."""

    name = "dense"

    def __init__(self, store: Any, embedder: Embedder, *, filters: dict[str, Any] | None = None) -> None:
        self.store = store
        self.embedder = embedder
        self.filters = filters or None

    def retrieve(self, query: str, top_k: int = 10, *, allow_ids: Sequence[str] | None = None) -> list[Hit]:
        """The ``top_k`` best hits for ``query`` (restricted by the filters and ``allow_ids``)."""
        return self.retrieve_batch([query], top_k, allow_ids=allow_ids)[0]

    def retrieve_batch(
        self, queries: Sequence[str], top_k: int = 10, *, allow_ids: Sequence[str] | None = None
    ) -> list[list[Hit]]:
        """Hits per query: one embedding batch, then one store query each."""
        if top_k <= 0:
            raise ValueError(f"top_k must be positive, got {top_k}")
        if not queries or (allow_ids is not None and not allow_ids):
            return [[] for _ in queries]
        vectors = self.embedder.embed_queries(list(queries))
        filters = _restrict(self.filters, allow_ids)
        store = _current(self.store)
        search = getattr(store, "embedding_retrieval", None) or store._embedding_retrieval
        return [
            [_hit(d) for d in search(query_embedding=v.tolist(), filters=filters, top_k=top_k)]
            for v in vectors
        ]


class StoreKeywordRetriever:
    """Lexical retrieval inside the store: PostgreSQL full-text ranking (``keyword_search`` of
    :class:`retrieval.pgvector_store.WinnowPgvectorDocumentStore`), or a store's own BM25
    (``bm25_retrieval``, e.g. Haystack's in-memory store). Named ``bm25`` for the lexical slot of hybrid
    fusion and of each hit's ranks, although PostgreSQL's ``ts_rank_cd`` is not BM25."""

    name = "bm25"

    def __init__(self, store: Any, *, filters: dict[str, Any] | None = None) -> None:
        self.store = store
        self.filters = filters or None
        self.description = "postgres full-text (ts_rank_cd, any query word)"

    def retrieve(self, query: str, top_k: int = 10, *, allow_ids: Sequence[str] | None = None) -> list[Hit]:
        return self.retrieve_batch([query], top_k, allow_ids=allow_ids)[0]

    def retrieve_batch(
        self, queries: Sequence[str], top_k: int = 10, *, allow_ids: Sequence[str] | None = None
    ) -> list[list[Hit]]:
        """Hits per query, one store query each."""
        if top_k <= 0:
            raise ValueError(f"top_k must be positive, got {top_k}")
        if allow_ids is not None and not allow_ids:
            return [[] for _ in queries]
        store = _current(self.store)
        filters = _restrict(self.filters, allow_ids)
        search = next(
            (
                getattr(store, m)
                for m in ("keyword_search", "bm25_retrieval", "_bm25_retrieval")
                if hasattr(store, m)
            ),
            None,
        )
        if search is None:
            raise ValueError(
                f"{type(store).__name__} has no keyword search; use lexical='bm25s' (BM25 over its documents)"
            )
        return [
            [_hit(d) for d in search(query, top_k=top_k, filters=filters)] if query.strip() else []
            for query in queries
        ]


def bm25_from_store(store: Any, **kwargs: Any) -> BM25Retriever:
    """bm25s built in memory over every document of ``store`` (as
    :func:`retrieval.first_stage.bm25_from_index` does over an index's table). O(corpus): reads them all."""
    documents = _current(store).filter_documents()
    if not documents:
        raise ValueError("the store holds no documents to build BM25 over")
    return BM25Retriever([document_to_passage(d) for d in documents], **kwargs)


def make_store_first_stage(
    kind: str,
    store: Any,
    embedder: Embedder | None,
    *,
    lexical: Literal["postgres", "bm25s"] = "postgres",
    filters: dict[str, Any] | None = None,
    rrf_k: int = 60,
    depth: int = 100,
    bm25: BM25Retriever | None = None,
) -> StoreDenseRetriever | StoreKeywordRetriever | BM25Retriever | HybridRetriever:
    """``dense``, ``bm25`` (the lexical side: ``lexical="postgres"`` full-text ranking in the store, or
    ``"bm25s"`` built over the store's documents; ``bm25`` reuses one already built) or ``hybrid`` (RRF of
    both, each asked for ``depth``) over ``store``, restricted by Haystack ``filters``. ``filters`` with
    ``lexical="bm25s"`` are resolved to the matching ids through the store."""
    if kind not in FIRST_STAGES:
        raise ValueError(f"unknown first stage {kind!r}; choose one of {', '.join(FIRST_STAGES)}")
    if lexical not in LEXICAL:
        raise ValueError(f"unknown lexical search {lexical!r}; choose one of {', '.join(LEXICAL)}")
    if kind != "bm25" and embedder is None:
        raise ValueError(f"a {kind} first stage needs an embedder")

    def lexical_stage() -> Any:
        if lexical == "postgres":
            return StoreKeywordRetriever(store, filters=filters)
        retriever = bm25 if bm25 is not None else bm25_from_store(store)
        return retriever if not filters else _AllowIds(retriever, store, filters)

    if kind == "dense":
        assert embedder is not None
        return StoreDenseRetriever(store, embedder, filters=filters)
    if kind == "bm25":
        return lexical_stage()
    assert embedder is not None
    return HybridRetriever(
        [StoreDenseRetriever(store, embedder, filters=filters), lexical_stage()], k=rrf_k, depth=depth
    )


class _AllowIds:
    """A retriever that takes ``allow_ids`` (bm25s), restricted to the documents matching ``filters``."""

    name = "bm25"

    def __init__(self, retriever: Any, store: Any, filters: dict[str, Any]) -> None:
        self.retriever = retriever
        self.store = store
        self.filters = filters

    def retrieve_batch(
        self, queries: Sequence[str], top_k: int = 10, *, allow_ids: Sequence[str] | None = None
    ) -> list[list[Hit]]:
        ids = [d.id for d in _current(self.store).filter_documents(self.filters)]
        if allow_ids is not None:
            allowed = set(allow_ids)
            ids = [i for i in ids if i in allowed]
        return self.retriever.retrieve_batch(queries, top_k, allow_ids=ids)


def write_passages(
    store: Any,
    passages: Sequence[Passage],
    embedder: Embedder,
    *,
    batch_size: int = 256,
    show_progress: bool = True,
) -> int:
    """Embed title + text of every passage and upsert them into ``store`` in batches (a rerun overwrites,
    never duplicates). Returns how many were written. Chunking is not supported here."""
    from haystack.document_stores.types import DuplicatePolicy

    if any(p.parent_id for p in passages):
        raise ValueError("chunked passages cannot be written to a document store yet; index whole documents")
    written = 0
    store = _current(store)
    with tqdm(total=len(passages), desc="embedding", unit="doc", disable=not show_progress) as bar:
        for start in range(0, len(passages), batch_size):
            block = list(passages[start : start + batch_size])
            vectors = embedder.embed_documents([p.full_text() for p in block], show_progress=False)
            documents = [passage_to_document(p, v.tolist()) for p, v in zip(block, vectors, strict=True)]
            written += store.write_documents(documents, policy=DuplicatePolicy.OVERWRITE)
            bar.update(len(block))
    return written
