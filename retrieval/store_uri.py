"""One store address everywhere: ``--store DIR`` (FAISS, winnow's embedded default) or
``--store postgresql://...`` (PostgreSQL + pgvector through pgvector-haystack).

:func:`open_document_store` turns an address into a Haystack ``DocumentStore``; :func:`redact_dsn` hides the
password of any PostgreSQL address in a text before it is logged or shown; :class:`PerThreadStores` gives
each worker thread its own store (one connection each), so concurrent searches never queue on one
connection.

A PostgreSQL address is a libpq URI. winnow reads two parameters of its own from the query string and removes
them before connecting: ``table`` (default ``winnow_documents``) and ``lexical`` (the lexical side of ``bm25``
and ``hybrid`` first stages: ``bm25s`` built in memory over the store's documents, or ``postgres`` full-text
ranking in the database), e.g. ``postgresql://user:pass@db:5432/search?table=scifact&sslmode=require``.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from winnow.retrieval.redaction import redact_dsn

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_TABLE",
    "PerThreadStores",
    "is_postgres_uri",
    "open_document_store",
    "redact_dsn",
    "split_postgres_uri",
]

DEFAULT_TABLE = "winnow_documents"
WINNOW_PARAMS = ("table", "lexical")  # winnow's own URI query parameters, removed before connecting
_SCHEMES = ("postgresql://", "postgres://")
_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,47}$")


def is_postgres_uri(uri: str | Path) -> bool:
    """Whether ``uri`` names a PostgreSQL database (``postgresql://`` or ``postgres://``) rather than a
    FAISS index directory. A ``Path`` made from such a string (``//`` collapsed to ``/``) counts too."""
    text = str(uri).strip().lower()
    if isinstance(uri, Path):
        return text.startswith(("postgresql:/", "postgres:/"))
    return text.startswith(_SCHEMES)


def split_postgres_uri(uri: str) -> tuple[str, dict[str, str]]:
    """``(dsn, options)``: the libpq URI without winnow's own query parameters, and those parameters
    (``table``, ``lexical``). Raises ``ValueError`` (with the password redacted) for a malformed address."""
    text = str(uri).strip()
    if not is_postgres_uri(text):
        raise ValueError(f"not a PostgreSQL URI: {redact_dsn(text)!r} (expected postgresql://...)")
    parts = urlsplit(text)
    params = parse_qsl(parts.query, keep_blank_values=True)
    options = {k: v for k, v in params if k in WINNOW_PARAMS}
    kept = [(k, v) for k, v in params if k not in WINNOW_PARAMS]
    dsn = urlunsplit(parts._replace(query=urlencode(kept)))
    table = options.get("table")
    if table is not None and not _TABLE_NAME.match(table):
        raise ValueError(
            f"table={table!r} in {redact_dsn(text)!r}: use letters, digits and underscores (at most 48, "
            "not starting with a digit)"
        )
    lexical = options.get("lexical")
    if lexical is not None and lexical not in ("bm25s", "postgres"):
        raise ValueError(f"lexical={lexical!r} in {redact_dsn(text)!r}: use bm25s or postgres")
    return dsn, options


def open_document_store(
    uri: str | Path,
    *,
    embedding_dim: int = 384,
    create: bool = True,
    table_name: str | None = None,
    search_strategy: Literal["hnsw", "exact"] = "hnsw",
    hnsw_m: int = 16,
    hnsw_ef_construction: int = 64,
    hnsw_ef_search: int | None = None,
    language: str = "english",
    embedder: str | None = None,
    recreate: bool = False,
) -> Any:
    """Open the document store ``uri`` names.

    Returns a :class:`retrieval.document_store.WinnowDocumentStore` for a FAISS index directory (loaded when
    it holds an index, else a new empty store that saves there), or a
    :class:`retrieval.pgvector_store.WinnowPgvectorDocumentStore` (a
    ``haystack_integrations.document_stores.pgvector.PgvectorDocumentStore``) for ``postgresql://...``:
    cosine similarity (inner product on winnow's L2-normalised vectors, so scores equal FAISS's), an HNSW
    index (``search_strategy="hnsw"``, ``m``/``ef_construction``; ``"exact"``: no vector index, exact scans)
    searched with ``hnsw.iterative_scan = strict_order`` set on every connection, so a filtered search
    still fills ``top_k``; a GIN full-text index over title + text for the lexical side of hybrid search.

    :param embedding_dim: dimension of the vectors (the embedder's); checked against an existing table.
    :param create: create a missing table (PostgreSQL) or accept a missing directory (FAISS); ``False``
        raises ``FileNotFoundError`` instead, naming the store with its password redacted.
    :param table_name: PostgreSQL table (default: the URI's ``?table=``, else ``winnow_documents``).
    :param embedder: the embedder's name, recorded with a new PostgreSQL table and required to match an
        existing one (FAISS: the name the store records; default: winnow's packaged MiniLM).
    :param recreate: drop and recreate the PostgreSQL table.
    """
    if search_strategy not in ("hnsw", "exact"):
        raise ValueError(f"search_strategy must be 'hnsw' or 'exact', got {search_strategy!r}")
    if not is_postgres_uri(uri):
        return _open_faiss(Path(uri), embedding_dim=embedding_dim, create=create, embedder=embedder)
    from winnow.retrieval.pgvector_store import WinnowPgvectorDocumentStore

    dsn, options = split_postgres_uri(str(uri))
    table = table_name or options.get("table") or DEFAULT_TABLE
    if not _TABLE_NAME.match(table):
        raise ValueError(f"table name {table!r}: use letters, digits and underscores (at most 48)")
    store = WinnowPgvectorDocumentStore(
        dsn=dsn,
        table_name=table,
        embedding_dimension=embedding_dim,
        search_strategy="hnsw" if search_strategy == "hnsw" else "exact_nearest_neighbor",
        hnsw_index_creation_kwargs={"m": hnsw_m, "ef_construction": hnsw_ef_construction},
        hnsw_ef_search=hnsw_ef_search,
        language=language,
        recreate_table=recreate,
    )
    if not create and not recreate and not store.table_exists():
        store.close()
        raise FileNotFoundError(
            f"no table {table!r} in {redact_dsn(dsn)}; write one first with "
            f"`winnow index --corpus PATH --store {redact_dsn(str(uri))}`"
        )
    store.check_embedder(embedder, embedding_dim)
    return store


def _open_faiss(path: Path, *, embedding_dim: int, create: bool, embedder: str | None) -> Any:
    from winnow.retrieval.document_store import WinnowDocumentStore

    if not create and not (path / "manifest.json").is_file():
        raise FileNotFoundError(f"no winnow index at {path}; build one with `winnow index --out {path}`")
    kwargs: dict[str, Any] = {"index_path": str(path), "embedding_dim": embedding_dim}
    if embedder is not None:
        kwargs["embedder"] = embedder
    return WinnowDocumentStore(**kwargs)


class PerThreadStores:
    """One store per thread, opened on a thread's first :meth:`get` with ``opener()`` (each PostgreSQL
    store holds its own connection, so N threads search over N connections at once), all closed by
    :meth:`close`. ``opener`` is called once at construction too, to fail early and create the table."""

    def __init__(self, opener: Callable[[], Any]) -> None:
        self._opener = opener
        self._local = threading.local()
        self._lock = threading.Lock()
        self._stores: list[Any] = []
        self.first = self.get()

    def get(self) -> Any:
        """This thread's store."""
        store = getattr(self._local, "store", None)
        if store is None:
            store = self._opener()
            self._local.store = store
            with self._lock:
                self._stores.append(store)
        return store

    def __len__(self) -> int:
        """How many stores (connections) have been opened."""
        with self._lock:
            return len(self._stores)

    def close(self) -> None:
        """Close every store opened so far."""
        with self._lock:
            stores, self._stores = self._stores, []
        for store in stores:
            close = getattr(store, "close", None)
            if close is not None:
                try:
                    close()
                except Exception as exc:  # noqa: BLE001 - closing is best effort
                    logger.debug("closing a store failed: %s", redact_dsn(str(exc)))
