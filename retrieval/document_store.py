"""A Haystack ``DocumentStore`` on a winnow index: FAISS holds the vectors, the SQLite table the documents.

Every document is a row of one :class:`~indexes.WinnowIndex` table (the table's ``key`` is the FAISS id);
documents with an embedding also have a FAISS vector, documents without one are rows only (never searched).
Keys follow insertion order (SQLite ``AUTOINCREMENT``), so reading the table by key returns documents as
Haystack's ``InMemoryDocumentStore`` does (an overwritten document is re-inserted, so it moves to the end).

On disk (``index_path``) the store is an ordinary winnow index directory, opened in place: each mutating call
is one transaction of its SQLite table (rows and the list of changed vectors), on disk when the call returns;
``vectors.faiss`` is rewritten only by a compaction (:meth:`WinnowDocumentStore.compact`, or automatically
once enough vectors changed), or when the index itself is replaced (first write, a new dimension,
``recreate_index``). Its manifest's ``extra["haystack_store"]`` says whether the dimension is still open (no
embedding yet).

Round-trip. ``id``, ``content``, ``meta`` (JSON: nested dicts and lists survive; tuples come back as lists),
``embedding`` (the raw vector in the table's float32 embedding column; values that float32 cannot hold exactly
are also kept as float64 in a reserved meta key), ``blob``, ``sparse_embedding`` and a stored ``score`` come
back exactly. The extra fields travel in ``meta["__haystack__"]``, which is stripped on the way out (a
document may not use that key itself). FAISS holds the L2-normalised vector (``metric="ip"`` is cosine).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import itertools
import json
import logging
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from haystack import Document, default_from_dict, default_to_dict
from haystack.dataclasses import ByteStream, SparseEmbedding
from haystack.document_stores.errors import DocumentStoreError, DuplicateDocumentError
from haystack.document_stores.types import DuplicatePolicy
from haystack.utils.filters import document_matches_filter

from winnow.indexes import (
    DocumentRecord,
    DocumentTable,
    VectorIndex,
    WinnowIndex,
    WinnowIndexError,
)
from winnow.retrieval.embedder import DEFAULT_EMBEDDER
from winnow.retrieval.legacy_names import upgrade_legacy_type
from winnow.retrieval.metadata_filter import filter_keys
from winnow.retrieval.metadata_filter import validate_filters as _validate_filters

logger = logging.getLogger(__name__)

RESERVED_META_KEY = "__haystack__"
MANIFEST_KEY = "haystack_store"
STORE_FORMAT = 1
METRICS = ("ip", "l2")
_BATCH = 1000


# ---------------------------------------------------------------------- Document <-> DocumentRecord
def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _embedding_arrays(doc: Document) -> tuple[np.ndarray | None, str | None]:
    """(float32 vector for the table and FAISS, base64 float64 copy when float32 is not exact)."""
    if doc.embedding is None:
        return None, None
    try:
        exact = np.asarray(doc.embedding, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"document {doc.id!r}: embedding must be a list of numbers ({exc})") from exc
    if exact.ndim != 1 or exact.size == 0:
        raise ValueError(
            f"document {doc.id!r}: embedding must be a non-empty flat list, got shape {exact.shape}"
        )
    vector = exact.astype(np.float32)
    if not np.isfinite(vector).all():
        raise ValueError(f"document {doc.id!r}: embedding holds NaN or infinite values (as float32)")
    if np.array_equal(vector.astype(np.float64), exact):
        return vector, None
    return vector, _b64(exact.astype("<f8").tobytes())


def _extras(doc: Document, exact_embedding: str | None) -> dict[str, Any]:
    """The Document fields the table has no column for."""
    extras: dict[str, Any] = {}
    if doc.blob is not None:
        blob = doc.blob
        extras["blob"] = {"data": _b64(bytes(blob.data)), "mime_type": blob.mime_type, "meta": blob.meta}
    if doc.sparse_embedding is not None:
        extras["sparse_embedding"] = doc.sparse_embedding.to_dict()
    if doc.score is not None:
        extras["score"] = doc.score
    if exact_embedding is not None:
        extras["embedding_f64"] = exact_embedding
    return extras


def _parent_id(meta: dict[str, Any]) -> str | None:
    value = meta.get("parent_id")
    return value if isinstance(value, str) and value else None


def _check_json(doc_id: str, meta: dict[str, Any]) -> bool:
    """Raise ValueError unless ``meta`` is JSON-serialisable; False when JSON would change it."""
    try:
        text = json.dumps(meta, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"document {doc_id!r}: meta (and blob meta) must be JSON-serialisable (dicts, lists, str, int, "
            f"float, bool, None); {exc}. Convert such values (e.g. dates to ISO strings) before writing."
        ) from exc
    return json.loads(text) == meta


def document_to_record(doc: Document, key: int | None = None) -> DocumentRecord:
    """The table record for a Haystack Document (extra fields packed under ``meta["__haystack__"]``)."""
    if not isinstance(doc.meta, dict):
        raise ValueError(f"document {doc.id!r}: meta must be a dict, got {type(doc.meta).__name__}")
    if RESERVED_META_KEY in doc.meta:
        raise ValueError(
            f"document {doc.id!r}: meta key {RESERVED_META_KEY!r} is reserved by WinnowDocumentStore; "
            f"rename it"
        )
    vector, exact = _embedding_arrays(doc)
    extras = _extras(doc, exact)
    meta = {**doc.meta, RESERVED_META_KEY: extras} if extras else dict(doc.meta)
    return DocumentRecord(
        id=doc.id, text=doc.content, meta=meta, parent_id=_parent_id(doc.meta), embedding=vector, key=key
    )


def record_to_document(record: DocumentRecord, *, with_embedding: bool = True) -> Document:
    """The Haystack Document for a table record (inverse of :func:`document_to_record`)."""
    meta = dict(record.meta)
    extras = meta.pop(RESERVED_META_KEY, None)
    extras = extras if isinstance(extras, dict) else {}
    # a parent_id column without meta["parent_id"]: written by `winnow index`, not by the store
    if record.parent_id is not None and "parent_id" not in meta:
        meta["parent_id"] = record.parent_id
    embedding = None
    if with_embedding:
        if "embedding_f64" in extras:
            embedding = np.frombuffer(base64.b64decode(extras["embedding_f64"]), dtype="<f8").tolist()
        elif record.embedding is not None:
            embedding = record.embedding.tolist()
    blob = None
    if isinstance(extras.get("blob"), dict):
        raw = extras["blob"]
        blob = ByteStream(
            data=base64.b64decode(raw["data"]), meta=raw.get("meta") or {}, mime_type=raw.get("mime_type")
        )
    sparse = extras.get("sparse_embedding")
    return Document(
        id=record.id,
        content=record.text,
        blob=blob,
        meta=meta,
        score=extras.get("score"),
        embedding=embedding,
        sparse_embedding=SparseEmbedding.from_dict(sparse) if isinstance(sparse, dict) else None,
    )


# ---------------------------------------------------------------------- filters
def _mentions_embedding(node: Any) -> bool:
    if isinstance(node, dict):
        field = node.get("field")
        if isinstance(field, str) and field.split(".")[0] == "embedding":
            return True
        return any(_mentions_embedding(c) for c in node.get("conditions") or [])
    return False


def _meta_key(field: str) -> str:
    return field.removeprefix("meta.")


def _hashable(value: Any) -> Any:
    """Nested metadata values as hashable tuples (for counting unique values)."""
    if isinstance(value, list):
        return ("list", tuple(_hashable(v) for v in value))
    if isinstance(value, tuple):
        return ("tuple", tuple(_hashable(v) for v in value))
    if isinstance(value, dict):
        return ("dict", frozenset((_hashable(k), _hashable(v)) for k, v in value.items()))
    return value


def _add(index: WinnowIndex, records: list[DocumentRecord]) -> None:
    """Add records to ``index``; those with an embedding also get a vector."""
    has_vector = [r.embedding is not None for r in records]
    vectors = [r.embedding for r in records if r.embedding is not None]
    index.add_records(records, np.stack(vectors) if vectors else None, has_vector=has_vector)


# ---------------------------------------------------------------------- the store
class WinnowDocumentStore:
    """Haystack document store backed by a winnow index (FAISS + SQLite document table).

    :param index_path: Index directory. When it holds an index, it is opened in place; with ``index_path``
        set, every mutating call (write, delete, update) is committed there (incrementally: appended rows and
        vectors, deleted ones listed) before returning. ``None`` keeps everything in memory (:meth:`save`
        still writes on request).
    :param embedding_dim: Vector dimension; ``None`` takes it from the first embedding written (or the loaded
        index).
    :param factory: FAISS ``index_factory`` string for a new index (``"Flat"`` exact, ``"HNSW32"``
        approximate). Factories that need training (IVF, PQ) are not built here: build them with
        ``winnow index`` and load them.
    :param metric: ``"ip"`` (inner product of L2-normalised vectors, i.e. cosine, as winnow's embedder) or
        ``"l2"`` (scores are negative squared distances).
    :param embedder: Name of the model that made the embeddings; recorded in the manifest and checked when an
        existing index is loaded.

    Thread-safe: every call holds the store's lock (searches also hold the index's own lock).
    """

    def __init__(
        self,
        *,
        index_path: str | None = None,
        embedding_dim: int | None = None,
        factory: str = "Flat",
        metric: str = "ip",
        embedder: str = DEFAULT_EMBEDDER,
    ) -> None:
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {list(METRICS)}, got {metric!r}")
        if embedding_dim is not None and (
            isinstance(embedding_dim, bool) or not isinstance(embedding_dim, int) or embedding_dim <= 0
        ):
            raise ValueError(f"embedding_dim must be a positive integer or None, got {embedding_dim!r}")
        if not isinstance(factory, str) or not factory.strip():
            raise ValueError(f"factory must be a FAISS index_factory string such as 'Flat', got {factory!r}")
        if not isinstance(embedder, str) or not embedder:
            raise ValueError(f"embedder must be a non-empty model name, got {embedder!r}")
        self.index_path = None if index_path is None else str(index_path)
        self.embedding_dim_init = embedding_dim
        self.factory = factory
        self.metric = metric
        self.embedder = embedder
        self._lock = threading.RLock()
        self._index: WinnowIndex
        self._dim_open: bool  # True while _index is a placeholder (dimension 1) awaiting the first vector
        path = None if index_path is None else Path(index_path)
        if path is not None and path.exists() and not (path.is_dir() and not any(path.iterdir())):
            self._load(path)
        else:
            self._index, self._dim_open = self._new_index(embedding_dim), embedding_dim is None

    # ------------------------------------------------------------------ setup
    def _new_index(self, dim: int | None, table: DocumentTable | None = None) -> WinnowIndex:
        """An index of dimension ``dim`` over ``table`` (new when None); ``dim=None`` gives a placeholder
        (dimension 1) that holds documents without embeddings until the dimension is known."""
        vectors = VectorIndex(dim or 1, self.factory if dim else "Flat", self.metric)
        if vectors.needs_training:
            raise ValueError(
                f"factory {self.factory!r} needs training, which WinnowDocumentStore does not do; use a "
                f"factory without training (e.g. 'Flat', 'HNSW32'), or build and train the index with "
                f"`winnow index` and open it with index_path"
            )
        return WinnowIndex(vectors, table, embedder=self.embedder)

    def _load(self, path: Path) -> None:
        index = WinnowIndex.load(path, expected_embedder=self.embedder)
        info = index.extra.get(MANIFEST_KEY)
        info = info if isinstance(info, dict) else {}
        self._dim_open = bool(info.get("dim_provisional")) and len(index) == 0
        if self._dim_open and self.embedding_dim_init is not None:
            index, self._dim_open = self._new_index(self.embedding_dim_init, index.table), False
        elif not self._dim_open:
            self._check_loaded(path, index)
        self._index = index
        logger.info("Opened WinnowDocumentStore at %s with %d documents", path, self.count_documents())

    def _check_loaded(self, path: Path, index: WinnowIndex) -> None:
        dim = index.vectors.dim
        if self.embedding_dim_init is not None and dim != self.embedding_dim_init:
            raise ValueError(
                f"the index at {path} has embedding dimension {dim}, but "
                f"embedding_dim={self.embedding_dim_init} was asked for; pass embedding_dim={dim} (or None) "
                f"or use another index_path"
            )
        if index.vectors.metric != self.metric:
            raise ValueError(
                f"the index at {path} uses metric {index.vectors.metric!r}, but metric={self.metric!r} was "
                f"asked for; pass metric={index.vectors.metric!r} or use another index_path"
            )
        if index.vectors.factory != self.factory:
            logger.warning(
                "index at %s was built with factory %r, not %r; using %r",
                path,
                index.vectors.factory,
                self.factory,
                index.vectors.factory,
            )

    # ------------------------------------------------------------------ properties
    @property
    def index(self) -> WinnowIndex | None:
        """The winnow index holding every document (``None`` until the dimension is known)."""
        return None if self._dim_open else self._index

    @property
    def embedding_dim(self) -> int | None:
        """The dimension of the stored vectors, or ``None`` while it is not known yet."""
        return None if self._dim_open else self._index.vectors.dim

    def __repr__(self) -> str:
        return (
            f"WinnowDocumentStore(index_path={self.index_path!r}, embedding_dim={self.embedding_dim}, "
            f"factory={self.factory!r}, metric={self.metric!r}, documents={self.count_documents()})"
        )

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """Serialises the store's init parameters (the documents stay in ``index_path``)."""
        return default_to_dict(
            self,
            index_path=self.index_path,
            embedding_dim=self.embedding_dim_init,
            factory=self.factory,
            metric=self.metric,
            embedder=self.embedder,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WinnowDocumentStore:
        """Builds the store from :meth:`to_dict` output (loading ``index_path`` when it holds an index)."""
        return default_from_dict(cls, upgrade_legacy_type(data, cls))

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path | None = None) -> Path:
        """Write the store atomically to ``path`` (default ``index_path``); returns the directory.

        ``WinnowIndex.save`` writes a temporary directory beside it and renames it into place; on any error
        the previous directory stays as it was. Saving to the directory the index is open in compacts it;
        the first save to ``index_path`` opens the index there, so later writes go there in place.
        """
        if path is None:
            if self.index_path is None:
                raise ValueError("this store has no index_path; pass save(path) to choose where to write it")
            path = self.index_path
        target = Path(path).absolute()
        with self._lock:
            index = self._index
            index.extra = {
                **index.extra,
                MANIFEST_KEY: {"format": STORE_FORMAT, "dim_provisional": self._dim_open},
            }
            home = self.index_path is not None and target == Path(self.index_path).absolute()
            try:
                index.save(target, open_in_place=home)
            except WinnowIndexError as exc:
                raise DocumentStoreError(str(exc)) from exc
        return target

    def compact(self) -> None:
        """Rewrite ``vectors.faiss`` from the vectors in memory and forget the changes listed since the last
        snapshot (writes do it by themselves once enough vectors changed); a no-op without ``index_path``."""
        with self._lock:
            if self.index_path is not None:
                self.save(self.index_path)

    def _in_place(self) -> bool:
        """Whether the index is open in ``index_path`` with the manifest it needs (writes are on disk)."""
        index = self._index
        live = index.live_dir
        info = index.extra.get(MANIFEST_KEY)
        provisional = bool(info.get("dim_provisional")) if isinstance(info, dict) else False
        return (
            self.index_path is not None
            and live is not None
            and live == Path(self.index_path).absolute()
            and index.manifest is not None
            and index.path == live
            and provisional == self._dim_open
        )

    def _commit(self) -> None:
        """Make the last write durable: it already is when the index is open in place; otherwise (first
        write, new index or dimension) save the index to ``index_path`` and open it there."""
        if self.index_path is not None and not self._in_place():
            self.save(self.index_path)

    def _recover(self, index: WinnowIndex, replaced: list[DocumentRecord]) -> None:
        """After a write whose table transaction was rolled back: bring FAISS back in line with the table
        (reopened from disk when live there, else the replaced vectors put back)."""
        if index is self._index and self._in_place():
            assert self.index_path is not None
            old = self._index
            self._load(Path(self.index_path))
            old.table.close()
            return
        stray = np.setdiff1d(index.vectors.ids(), index.table.all_keys())
        index.vectors.remove(stray)
        back = [r for r in replaced if r.embedding is not None and r.key is not None]
        if back:
            keys = np.array([r.key for r in back], dtype=np.int64)
            index.vectors.upsert(keys, np.stack([r.embedding for r in back]))

    # ------------------------------------------------------------------ reading
    def _vectors_for(self, keys: list[int]) -> dict[int, list[float]]:
        """Stored (normalised) FAISS vectors of those ``keys`` that have one; {} when FAISS cannot."""
        keys_arr = np.asarray(keys, dtype=np.int64)
        if keys_arr.size:
            keys_arr = keys_arr[self._index.vectors.contains(keys_arr)]
        if not keys_arr.size:
            return {}
        try:
            vectors = self._index.vectors.reconstruct(keys_arr)
        except (RuntimeError, KeyError) as exc:
            logger.debug("cannot reconstruct vectors for documents without a stored embedding: %s", exc)
            return {}
        return {int(k): v.tolist() for k, v in zip(keys_arr, vectors, strict=True)}

    def _documents(
        self, records: list[DocumentRecord], *, with_embedding: bool, reconstruct: bool = True
    ) -> list[Document]:
        """Documents for records; ``reconstruct`` fills a missing embedding from FAISS where there is one."""
        docs = [record_to_document(r, with_embedding=with_embedding) for r in records]
        if not (with_embedding and reconstruct):
            return docs
        vectors = self._vectors_for(
            [r.key for r, d in zip(records, docs, strict=True) if d.embedding is None]
        )
        return [
            dataclasses.replace(d, embedding=vectors[r.key]) if r.key in vectors else d
            for r, d in zip(records, docs, strict=True)
        ]

    def _filter_keys(self, filters: dict[str, Any], *, reconstruct: bool = True) -> np.ndarray:
        """Sorted keys of the documents matching (validated, non-empty) ``filters``: run in SQLite
        (:mod:`winnow.retrieval.filter_sql`), Haystack's ``document_matches_filter`` checking in Python only
        the rows SQL cannot decide as Haystack does (``reconstruct`` as in :meth:`_documents`)."""
        with_embedding = _mentions_embedding(filters)

        def match(records: list[DocumentRecord]) -> list[bool]:
            docs = self._documents(records, with_embedding=with_embedding, reconstruct=reconstruct)
            return [document_matches_filter(filters=filters, document=doc) for doc in docs]

        table = self._index.table
        return filter_keys(table, filters, match, store_view=True, with_embedding=with_embedding)

    def _select(
        self, filters: dict[str, Any] | None, *, with_embedding: bool | None = None, reconstruct: bool = True
    ) -> list[tuple[DocumentRecord, Document]]:
        """(record, Document) of the documents matching (validated) ``filters``, in insertion order."""
        if with_embedding is None:
            with_embedding = _mentions_embedding(filters)
        table = self._index.table
        batches: Iterable[list[DocumentRecord]]
        if filters:
            keys = self._filter_keys(filters, reconstruct=reconstruct)
            batches = (
                [r for r in table.get_by_keys(chunk, with_embedding=with_embedding) if r is not None]
                for chunk in np.array_split(keys, range(_BATCH, keys.size, _BATCH))
            )
        else:
            records = table.iter_records(_BATCH, with_embedding=with_embedding)
            batches = iter(lambda: list(itertools.islice(records, _BATCH)), [])
        selected = []
        for batch in batches:
            docs = self._documents(batch, with_embedding=with_embedding, reconstruct=reconstruct)
            selected.extend(zip(batch, docs, strict=True))
        return selected

    def count_documents(self) -> int:
        """Number of documents stored (with and without embeddings)."""
        with self._lock:
            return self._index.table.count()

    def filter_documents(self, filters: dict[str, Any] | None = None) -> list[Document]:
        """Documents matching ``filters`` (Haystack filter syntax), in insertion order, with their embeddings.

        :raises ValueError: when ``filters`` is not in Haystack's syntax (no ``operator``/``conditions``).
        :raises FilterError: for a malformed filter or a comparison Haystack cannot make.
        """
        _validate_filters(filters)
        with self._lock:
            return [doc for _, doc in self._select(filters, with_embedding=True)]

    def count_documents_by_filter(self, filters: dict[str, Any]) -> int:
        """Number of documents matching ``filters`` (all documents for empty filters)."""
        _validate_filters(filters)
        if not filters:
            return self.count_documents()
        with self._lock:
            return int(self._filter_keys(filters).size)

    def count_unique_metadata_by_filter(
        self, filters: dict[str, Any], metadata_fields: list[str]
    ) -> dict[str, int]:
        """Per metadata field (with or without ``meta.``), the number of distinct non-None values."""
        _validate_filters(filters)
        with self._lock:
            docs = [doc for _, doc in self._select(filters)]
        result: dict[str, int] = {}
        for field in metadata_fields:
            key = _meta_key(field)
            result[key] = len({_hashable(d.meta[key]) for d in docs if d.meta.get(key) is not None})
        return result

    def get_metadata_fields_info(self) -> dict[str, dict[str, str]]:
        """Metadata field names with a type inferred from the stored values (keyword, int, float, boolean)."""
        types: dict[str, str] = {}
        with self._lock:
            docs = [doc for _, doc in self._select(None)]
        for doc in docs:
            for key, value in doc.meta.items():
                if value is None:
                    continue
                if isinstance(value, bool):
                    types[key] = "boolean"
                elif isinstance(value, int):
                    types[key] = "int"
                elif isinstance(value, float):
                    types[key] = "float"
                else:
                    types[key] = "keyword"
        return {key: {"type": kind} for key, kind in types.items()}

    def get_metadata_field_min_max(self, metadata_field: str) -> dict[str, Any]:
        """``{"min", "max"}`` of a metadata field over all documents (``None`` when absent/incomparable)."""
        key = _meta_key(metadata_field)
        with self._lock:
            docs = [doc for _, doc in self._select(None)]
        values = [d.meta[key] for d in docs if isinstance(d.meta.get(key), (int, float, str))]
        if not values:
            return {"min": None, "max": None}
        try:
            return {"min": min(values), "max": max(values)}
        except TypeError:
            return {"min": None, "max": None}

    def get_metadata_field_unique_values(
        self,
        metadata_field: str,
        search_term: str | None = None,
        from_: int = 0,
        size: int = 10,
        filters: dict[str, Any] | None = None,
    ) -> tuple[list[Any], int]:
        """A page of the distinct values of a metadata field (sorted by their text) and their total count.

        ``search_term`` keeps values containing it (case-insensitive); ``filters`` restricts the documents.
        """
        _validate_filters(filters)
        key = _meta_key(metadata_field)
        with self._lock:
            docs = [doc for _, doc in self._select(filters)]
        unique: dict[tuple[str, Any], Any] = {}
        for doc in docs:
            value = doc.meta.get(key)
            if value is not None:
                unique.setdefault((type(value).__name__, _hashable(value)), value)
        if search_term:
            term = search_term.lower()
            unique = {k: v for k, v in unique.items() if term in str(v).lower()}
        ordered = sorted(unique, key=lambda k: (str(unique[k]), k[0]))
        return [unique[k] for k in ordered[from_ : from_ + size]], len(ordered)

    # ------------------------------------------------------------------ writing
    @staticmethod
    def _check_documents(documents: Any) -> list[Document]:
        if not isinstance(documents, Iterable) or isinstance(documents, (str, bytes, dict)):
            raise ValueError("Please provide a list of Documents.")
        documents = list(documents)
        if any(not isinstance(doc, Document) for doc in documents):
            raise ValueError("Please provide a list of Documents.")
        return documents

    def _existing_ids(self, ids: list[str]) -> set[str]:
        found = self._index.table.keys_for(ids) >= 0
        return {doc_id for doc_id, hit in zip(ids, found, strict=True) if hit}

    def _plan(self, documents: list[Document], policy: DuplicatePolicy) -> tuple[list[Document], int]:
        """The documents to write (one per id) and the count write_documents reports."""
        existing = self._existing_ids(list(dict.fromkeys(d.id for d in documents)))
        if policy == DuplicatePolicy.OVERWRITE:
            last = {d.id: d for d in documents}  # the last copy of an id wins, as in InMemoryDocumentStore
            return list(last.values()), len(documents)
        if policy == DuplicatePolicy.SKIP:
            kept: dict[str, Document] = {}
            for doc in documents:
                if doc.id in existing or doc.id in kept:
                    logger.warning("ID '%s' already exists; skipped", doc.id)
                else:
                    kept[doc.id] = doc
            return list(kept.values()), len(kept)
        seen: set[str] = set()
        dupes = sorted({d.id for d in documents if d.id in existing or d.id in seen or seen.add(d.id)})
        if dupes:
            raise DuplicateDocumentError(
                f"ID '{dupes[0]}' already exists{f' (and {len(dupes) - 1} more)' if len(dupes) > 1 else ''}; "
                f"nothing was written. Use DuplicatePolicy.OVERWRITE or SKIP to write them anyway."
            )
        return documents, len(documents)

    def _to_records(self, documents: list[Document]) -> list[DocumentRecord]:
        """Records in document order (keys left to the table); everything validated first."""
        dim = self.embedding_dim
        records: list[DocumentRecord] = []
        changed: list[str] = []
        for doc in documents:
            record = document_to_record(doc)
            if not _check_json(doc.id, record.meta):
                changed.append(doc.id)
            if record.embedding is not None:
                dim = record.embedding.size if dim is None else dim
                if record.embedding.size != dim:
                    raise ValueError(
                        f"document {doc.id!r} has an embedding of dimension {record.embedding.size}, but the "
                        f"store's embeddings have dimension {dim}; embed every document with the same model. "
                        f"Nothing was written."
                    )
            records.append(record)
        if changed:
            logger.warning(
                "meta of %d document(s) (e.g. %r) changes when stored as JSON (tuples become lists, "
                "non-string keys become strings); they will be read back in the JSON form",
                len(changed),
                changed[0],
            )
        return records

    def write_documents(
        self, documents: list[Document], policy: DuplicatePolicy = DuplicatePolicy.NONE
    ) -> int:
        """Write documents; returns how many were written. ``NONE`` behaves as ``FAIL``.

        ``FAIL`` raises :class:`DuplicateDocumentError` (and writes nothing) when an id is already stored or
        repeats in the batch; ``SKIP`` keeps the stored copy (and the first copy within the batch);
        ``OVERWRITE`` replaces it (the last copy within the batch wins) and moves it to the end of the order.

        :raises ValueError: for input that is not a list of Documents, meta that is not JSON-serialisable or
            an embedding whose dimension differs from the store's.
        """
        documents = self._check_documents(documents)
        if policy == DuplicatePolicy.NONE:
            policy = DuplicatePolicy.FAIL
        with self._lock:
            to_write, written = self._plan(documents, policy)
            if not to_write:
                return written
            records = self._to_records(to_write)
            vectors = [r.embedding for r in records if r.embedding is not None]
            index = self._index
            if vectors and self._dim_open:
                index = self._new_index(int(vectors[0].size), index.table)
            replaced: list[DocumentRecord] = []
            try:
                with index.lock, index.table.transaction():  # one transaction: all of it or nothing
                    if policy == DuplicatePolicy.OVERWRITE:
                        ids = [d.id for d in to_write]
                        replaced = [r for r in index.table.get(ids) if r is not None]
                        index.delete_ids(ids)  # re-inserted with new keys: they move to the end
                    _add(index, records)
            except BaseException:
                self._recover(index, replaced)  # the overwritten documents are back, with their keys
                raise
            index.compact_if_due()
            self._index, self._dim_open = index, self._dim_open and not vectors
            self._commit()
        return written

    def delete_documents(self, document_ids: list[str]) -> None:
        """Delete documents by id; unknown ids are ignored."""
        with self._lock:
            if self._index.delete_ids(list(document_ids)):
                self._commit()

    def delete_all_documents(self, recreate_index: bool = False) -> None:
        """Delete every document. ``recreate_index=True`` also starts a fresh FAISS index (with
        ``embedding_dim=None`` the dimension is then inferred again from the next embedding written)."""
        with self._lock:
            old = self._index
            if recreate_index:
                self._index = self._new_index(self.embedding_dim_init)
                self._dim_open = self.embedding_dim_init is None
            else:
                self._index.delete_all()
            self._commit()
            if self._index is not old and old.live_dir is not None:
                old.table.close()  # its directory was replaced by the new index

    def delete_by_filter(self, filters: dict[str, Any]) -> int:
        """Delete the documents matching ``filters``; returns how many were deleted."""
        _validate_filters(filters, required=True)
        with self._lock:
            deleted = self._index.delete_ids([record.id for record, _ in self._select(filters)])
            if deleted:
                self._commit()
        return deleted

    def update_by_filter(self, filters: dict[str, Any], meta: dict[str, Any]) -> int:
        """Merge ``meta`` into the metadata of the documents matching ``filters``; returns how many.

        Updated documents keep their place in the order and their vectors (only the table rows change).
        """
        _validate_filters(filters, required=True)
        if not isinstance(meta, dict):
            raise ValueError(f"meta must be a dict, got {type(meta).__name__}")
        if RESERVED_META_KEY in meta:
            raise ValueError(f"meta key {RESERVED_META_KEY!r} is reserved by WinnowDocumentStore; rename it")
        with self._lock:
            selected = self._select(filters, with_embedding=True, reconstruct=False)  # rows are rewritten
            updated = []
            for record, _ in selected:
                new_meta = {**record.meta, **meta}
                _check_json(record.id, new_meta)
                parent_id = _parent_id(new_meta) if "parent_id" in meta else record.parent_id
                updated.append(dataclasses.replace(record, meta=new_meta, parent_id=parent_id))
            if updated:
                self._index.table.upsert(updated)  # same ids and keys: the vectors stay valid
                self._index.mark_changed()  # derived data (BM25) sees the new meta
                self._commit()
        return len(selected)

    # ------------------------------------------------------------------ retrieval
    def _query_vector(self, query_embedding: Any) -> np.ndarray:
        try:
            query = np.asarray(query_embedding, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"query_embedding must be a non-empty list of floats ({exc})") from exc
        if query.ndim != 1 or query.size == 0:
            raise ValueError(
                f"query_embedding must be a non-empty flat list of floats, got shape {query.shape}"
            )
        if not np.isfinite(query).all():
            raise ValueError("query_embedding holds NaN or infinite values")
        dim = self.embedding_dim
        if dim is not None and query.size != dim:
            raise ValueError(
                f"query_embedding has dimension {query.size}, but the store's documents have dimension "
                f"{dim}; embed the query with the model that embedded the documents ({self.embedder!r})"
            )
        return query.astype(np.float32)[None, :]

    def _scale(self, score: float) -> float:
        if self.metric == "ip":  # cosine in [-1, 1] -> [0, 1], as InMemoryDocumentStore scales cosine
            return (score + 1.0) / 2.0
        return 1.0 / (1.0 + max(-score, 0.0))  # l2: score is the negative squared distance

    def embedding_retrieval(
        self,
        query_embedding: list[float],
        filters: dict[str, Any] | None = None,
        top_k: int = 10,
        scale_score: bool = False,
        return_embedding: bool = False,
    ) -> list[Document]:
        """The ``top_k`` documents nearest ``query_embedding``, best first, with ``score`` set.

        ``filters`` become an allow-list for the FAISS search, so ``top_k`` results come back (when that many
        documents match) however far the matching documents are from the query. Documents without an
        embedding are never returned. ``scale_score`` maps cosine to [0, 1] ((s + 1) / 2; for ``l2``,
        1 / (1 + distance)).

        :raises ValueError: for an empty or wrongly sized ``query_embedding``, ``top_k < 1`` or bad filters.
        """
        if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
            raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
        _validate_filters(filters)
        with self._lock:
            query = self._query_vector(query_embedding)
            if self._dim_open or len(self._index) == 0:
                logger.warning("No documents with embeddings in the store; returning no documents")
                return []
            allow = None
            if filters:
                allow = self._filter_keys(filters)
                if not allow.size:
                    return []
            rows = self._index.search(query, int(top_k), allow_keys=allow, return_embedding=return_embedding)
            hits = rows[0]
            found = self._documents([record for record, _ in hits], with_embedding=return_embedding)
        return [
            dataclasses.replace(doc, score=self._scale(score) if scale_score else score)
            for doc, (_, score) in zip(found, hits, strict=True)
        ]

    # ------------------------------------------------------------------ async variants
    async def count_documents_async(self) -> int:
        """Async :meth:`count_documents`."""
        return await asyncio.to_thread(self.count_documents)

    async def filter_documents_async(self, filters: dict[str, Any] | None = None) -> list[Document]:
        """Async :meth:`filter_documents`."""
        return await asyncio.to_thread(self.filter_documents, filters)

    async def write_documents_async(
        self, documents: list[Document], policy: DuplicatePolicy = DuplicatePolicy.NONE
    ) -> int:
        """Async :meth:`write_documents`."""
        return await asyncio.to_thread(self.write_documents, documents, policy)

    async def delete_documents_async(self, document_ids: list[str]) -> None:
        """Async :meth:`delete_documents`."""
        await asyncio.to_thread(self.delete_documents, document_ids)

    async def delete_all_documents_async(self, recreate_index: bool = False) -> None:
        """Async :meth:`delete_all_documents`."""
        await asyncio.to_thread(self.delete_all_documents, recreate_index)

    async def delete_by_filter_async(self, filters: dict[str, Any]) -> int:
        """Async :meth:`delete_by_filter`."""
        return await asyncio.to_thread(self.delete_by_filter, filters)

    async def update_by_filter_async(self, filters: dict[str, Any], meta: dict[str, Any]) -> int:
        """Async :meth:`update_by_filter`."""
        return await asyncio.to_thread(self.update_by_filter, filters, meta)

    async def count_documents_by_filter_async(self, filters: dict[str, Any]) -> int:
        """Async :meth:`count_documents_by_filter`."""
        return await asyncio.to_thread(self.count_documents_by_filter, filters)

    async def count_unique_metadata_by_filter_async(
        self, filters: dict[str, Any], metadata_fields: list[str]
    ) -> dict[str, int]:
        """Async :meth:`count_unique_metadata_by_filter`."""
        return await asyncio.to_thread(self.count_unique_metadata_by_filter, filters, metadata_fields)

    async def get_metadata_fields_info_async(self) -> dict[str, dict[str, str]]:
        """Async :meth:`get_metadata_fields_info`."""
        return await asyncio.to_thread(self.get_metadata_fields_info)

    async def get_metadata_field_min_max_async(self, metadata_field: str) -> dict[str, Any]:
        """Async :meth:`get_metadata_field_min_max`."""
        return await asyncio.to_thread(self.get_metadata_field_min_max, metadata_field)

    async def get_metadata_field_unique_values_async(
        self,
        metadata_field: str,
        search_term: str | None = None,
        from_: int = 0,
        size: int = 10,
        filters: dict[str, Any] | None = None,
    ) -> tuple[list[Any], int]:
        """Async :meth:`get_metadata_field_unique_values`."""
        return await asyncio.to_thread(
            self.get_metadata_field_unique_values, metadata_field, search_term, from_, size, filters
        )

    async def embedding_retrieval_async(
        self,
        query_embedding: list[float],
        filters: dict[str, Any] | None = None,
        top_k: int = 10,
        scale_score: bool = False,
        return_embedding: bool = False,
    ) -> list[Document]:
        """Async :meth:`embedding_retrieval`."""
        return await asyncio.to_thread(
            self.embedding_retrieval, query_embedding, filters, top_k, scale_score, return_embedding
        )
