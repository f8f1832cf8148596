"""Build any first stage (dense, BM25, hybrid): over one ``WinnowIndex`` (:func:`make_first_stage`), or for a
dataset, over a given index or one built in memory (:func:`build_first_stage`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from winnow.indexes import EmbedderMismatchError, WinnowIndex
from winnow.retrieval.bm25 import BM25Retriever
from winnow.retrieval.bm25_index import bm25_for_index
from winnow.retrieval.corpus import Dataset
from winnow.retrieval.dense import DenseRetriever
from winnow.retrieval.embedder import Embedder, resolve_embedder
from winnow.retrieval.hit import FIRST_STAGES, Retriever
from winnow.retrieval.hybrid import HybridRetriever
from winnow.retrieval.indexing import build_index
from winnow.retrieval.store_uri import is_postgres_uri

logger = logging.getLogger(__name__)

__all__ = [
    "FIRST_STAGES",
    "bm25_from_index",
    "build_first_stage",
    "build_store_first_stage",
    "make_first_stage",
]


def bm25_from_index(index: WinnowIndex, **kwargs) -> BM25Retriever:
    """BM25 over the documents stored in the index's table (whole documents, not their chunks): the one
    saved with the index when current, else built (:func:`retrieval.bm25_index.bm25_for_index`)."""
    return bm25_for_index(index, **kwargs)


def make_first_stage(
    kind: str,
    index: WinnowIndex,
    embedder: Embedder | None = None,
    *,
    rrf_k: int = 60,
    depth: int = 100,
    bm25: BM25Retriever | None = None,
) -> DenseRetriever | BM25Retriever | HybridRetriever:
    """``dense``, ``bm25`` or ``hybrid`` (RRF of both) over ``index``. ``bm25``: a BM25 retriever already
    built over ``index`` (:func:`bm25_from_index`) to use instead of building one (the REST service keeps
    one between writes)."""
    if kind == "dense":
        return DenseRetriever(index, embedder)
    if kind == "bm25":
        return bm25 if bm25 is not None else bm25_from_index(index)
    if kind == "hybrid":
        lexical = bm25 if bm25 is not None else bm25_from_index(index)
        return HybridRetriever([DenseRetriever(index, embedder), lexical], k=rrf_k, depth=depth)
    raise ValueError(f"unknown first stage {kind!r}; choose one of {', '.join(FIRST_STAGES)}")


def build_first_stage(
    kind: str,
    dataset: Dataset | None = None,
    *,
    index: str | Path | Any | None = None,
    embedder: Any = None,
    depth: int = 100,
    device: str | None = None,
    show_progress: bool = True,
    lexical: str | None = None,
) -> tuple[Retriever, dict[str, Any]]:
    """A ``dense``/``bm25``/``hybrid`` first stage and a description of it for the report.

    With ``index`` (an index directory, a loaded ``WinnowIndex``, or a ``postgresql://`` store URI: see
    :func:`build_store_first_stage`, which ``lexical`` is passed to) the first stage runs over it; without,
    BM25 is built over ``dataset``'s corpus and dense/hybrid over an index embedded in memory with
    ``embedder`` (an ``Embedder``, a model name/folder, or None for the packaged default). ``depth``: how
    many of each retriever's hits a hybrid fuses (at least; a deeper request fuses deeper). It is not the
    number of candidates kept: RRF over shorter lists ranks differently, so evaluation, mining and search
    all fuse the same 100.
    """
    if kind not in FIRST_STAGES:
        raise ValueError(f"unknown first stage {kind!r}; choose one of {', '.join(FIRST_STAGES)}")
    if isinstance(index, (str, Path)) and is_postgres_uri(index):
        return build_store_first_stage(
            kind, dataset, str(index), embedder=embedder, depth=depth, device=device, lexical=lexical
        )
    info: dict[str, Any] = {"name": kind, "index": None, "chunked": False}
    if index is None and kind == "bm25":
        if dataset is None:
            raise ValueError("a BM25 first stage needs a dataset or an index")
        retriever = BM25Retriever(dataset.corpus)
        info["model"] = retriever.description
        return retriever, info
    win_index = _load_or_build_index(index, dataset, embedder, kind, device, show_progress)
    if index is not None and dataset is not None:
        _check_index_covers(win_index, dataset, index)
    info["index"] = str(index) if isinstance(index, (str, Path)) else None
    info["chunked"] = bool(win_index.extra.get("chunked"))
    emb = None
    if kind != "bm25":
        emb = embedder if isinstance(embedder, Embedder) else None
        if emb is None:
            emb = Embedder(embedder or win_index.embedder, device=device, show_progress=False)
        emb.load()
    retriever = make_first_stage(kind, win_index, emb, depth=depth)
    info["model"] = {"dense": win_index.embedder, "bm25": "bm25s"}.get(
        kind, f"rrf(bm25s, {win_index.embedder})"
    )
    if kind == "hybrid":
        info["fusion_depth"] = depth
    if kind != "bm25":
        info["embedder"] = win_index.embedder
    return retriever, info


def build_store_first_stage(
    kind: str,
    dataset: Dataset | None,
    uri: str,
    *,
    embedder: Any = None,
    depth: int = 100,
    device: str | None = None,
    lexical: str | None = None,
) -> tuple[Retriever, dict[str, Any]]:
    """A first stage over the PostgreSQL store at ``uri`` (written by ``winnow index --store``) and its
    description (the URI with its password redacted). The embedder defaults to the one recorded on the
    table. ``lexical`` (default: the URI's ``?lexical=``, else ``bm25s``): the lexical side of ``bm25`` and
    ``hybrid``, ``bm25s`` built in memory over the store's documents (the FAISS path's BM25) or ``postgres``
    full-text ranking in the database (no document leaves it; lower quality, see docs/pgvector.md)."""
    from winnow.retrieval.store_first_stage import make_store_first_stage
    from winnow.retrieval.store_uri import open_document_store, redact_dsn, split_postgres_uri

    lexical = lexical or split_postgres_uri(uri)[1].get("lexical") or "bm25s"
    store = open_document_store(uri, create=False)
    recorded = store.table_info().get("embedder")
    emb = None
    if kind != "bm25":
        emb = embedder if isinstance(embedder, Embedder) else None
        if emb is None:
            emb = Embedder(embedder or recorded, device=device, show_progress=False)
        if recorded and emb.name != recorded:
            raise EmbedderMismatchError(
                index_embedder=recorded, requested_embedder=emb.name, path=redact_dsn(uri)
            )
        emb.load()
        if emb.dim != store.embedding_dimension:
            raise ValueError(
                f"{redact_dsn(uri)} holds {store.embedding_dimension}-d vectors; "
                f"{emb.name} gives {emb.dim}-d vectors"
            )
    if dataset is not None:
        _check_store_covers(store, dataset, uri)
    retriever = make_store_first_stage(kind, store, emb, lexical=lexical, depth=depth)  # type: ignore[arg-type]
    lexical_name = "postgres full-text" if lexical == "postgres" else "bm25s"
    name = emb.name if emb is not None else recorded
    info: dict[str, Any] = {
        "name": kind,
        "index": redact_dsn(uri),
        "store": "pgvector",
        "chunked": False,
        "model": {"dense": name, "bm25": lexical_name}.get(kind, f"rrf({lexical_name}, {name})"),
    }
    if kind != "dense":
        info["lexical"] = lexical
    if kind == "hybrid":
        info["fusion_depth"] = depth
    if kind != "bm25":
        info["embedder"] = name
    return retriever, info


def _check_store_covers(store: Any, dataset: Dataset, uri: str, sample: int = 50) -> None:
    """Refuse a store that holds another corpus (as :func:`_check_index_covers` does for an index)."""
    from winnow.retrieval.store_uri import redact_dsn

    ids = [doc.id for doc in dataset.corpus[:: max(1, len(dataset.corpus) // sample)]][:sample]
    found = len(store.filter_documents({"field": "id", "operator": "in", "value": ids}))
    if found < len(ids) / 2:
        raise ValueError(
            f"store {redact_dsn(uri)} does not hold {dataset.name}'s corpus ({found} of {len(ids)} sampled "
            f"document ids found); fill it with: winnow index --corpus <{dataset.name} folder> --store URI"
        )


def _check_index_covers(win_index: Any, dataset: Dataset, index: Any, sample: int = 50) -> None:
    """Refuse an index built from another corpus (judged documents it cannot return would score zero)."""
    ids = [doc.id for doc in dataset.corpus[:: max(1, len(dataset.corpus) // sample)]][:sample]
    table = win_index.table
    found = sum(record is not None for record in table.get(ids, with_embedding=False))
    if found < len(ids):  # chunked indexes store chunks under their parent document's id
        found = len({parent for parent in ids if table.ids_for_parent([parent])})
    if found < len(ids) / 2:
        raise ValueError(
            f"index {index} does not hold {dataset.name}'s corpus ({found} of {len(ids)} sampled document "
            f"ids found); build one with: winnow index --corpus <{dataset.name} folder> --out DIR"
        )


def _load_or_build_index(
    index: str | Path | WinnowIndex | None,
    dataset: Dataset | None,
    embedder: Any,
    kind: str,
    device: str | None,
    show_progress: bool,
) -> WinnowIndex:
    if isinstance(index, WinnowIndex):
        return index
    if index is not None:
        expected = None
        if isinstance(embedder, Embedder):
            expected = embedder.name
        elif embedder and kind != "bm25":
            expected = resolve_embedder(embedder)[0]
        return WinnowIndex.load(index, expected_embedder=expected, read_only=True)  # searches only: mmap
    if dataset is None:
        raise ValueError(f"a {kind} first stage needs an index directory or a dataset to index in memory")
    emb = embedder if isinstance(embedder, Embedder) else Embedder(embedder, device=device)
    logger.info("embedding %d documents of %s in memory with %s", len(dataset.corpus), dataset.name, emb.name)
    return build_index(dataset.corpus, emb, show_progress=show_progress)
