"""Documents in an embedded SQLite table; each row's int64 ``key`` is the FAISS external id of its vector.

Besides ``documents``, the database holds ``winnow_state`` (a ``changes`` counter that every write transaction
bumps: the table's :attr:`DocumentTable.stamp`) and, for a file-backed table, ``vector_changes``: the keys
whose vectors changed since the index's last vector snapshot, with the new vector (NULL: no vector any more),
written in the same transaction as the rows (see :mod:`indexes.index_dir`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import DuplicateIdError

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_BATCH = 900  # bound parameters per IN (...) query; below SQLite's historical limit of 999
_COLUMNS = "key, id, parent_id, text, meta, embedding"
_COLUMNS_NO_EMBEDDING = "key, id, parent_id, text, meta, NULL"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    key INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    parent_id TEXT,
    text TEXT,
    meta TEXT NOT NULL DEFAULT '{}',
    embedding BLOB
);
CREATE INDEX IF NOT EXISTS documents_parent_id ON documents(parent_id);
CREATE TABLE IF NOT EXISTS winnow_state (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO winnow_state (name, value) VALUES ('changes', 0);
CREATE TABLE IF NOT EXISTS vector_changes (key INTEGER PRIMARY KEY, seq INTEGER NOT NULL, vector BLOB);
"""
_UPSERT = """
INSERT INTO documents (key, id, parent_id, text, meta, embedding) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT(id) DO UPDATE SET
    parent_id = excluded.parent_id, text = excluded.text, meta = excluded.meta, embedding = excluded.embedding
"""
_INSERT = "INSERT INTO documents (key, id, parent_id, text, meta, embedding) VALUES (?, ?, ?, ?, ?, ?)"


@dataclass
class DocumentRecord:
    """One stored document (or chunk). ``key`` is assigned by the table and is the vector's FAISS id."""

    id: str
    text: str | None
    meta: dict = field(default_factory=dict)
    parent_id: str | None = None
    embedding: np.ndarray | None = None
    key: int | None = None


def _batches(values: Sequence, size: int = _BATCH) -> Iterator[Sequence]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _placeholders(n: int) -> str:
    return ",".join("?" * n)


def _encode_meta(record: DocumentRecord) -> str:
    if not isinstance(record.meta, dict):
        raise ValueError(f"document {record.id!r}: meta must be a dict, got {type(record.meta).__name__}")
    try:
        return json.dumps(record.meta, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"document {record.id!r}: meta must be JSON-serialisable (dicts, lists, str, int, float, "
            f"bool, None); {exc}. Convert such values (e.g. to str) before storing."
        ) from exc


def _encode_embedding(record: DocumentRecord) -> bytes | None:
    if record.embedding is None:
        return None
    arr = np.asarray(record.embedding, dtype=np.float32)
    if arr.ndim != 1:
        raise ValueError(f"document {record.id!r}: embedding must be 1-D, got shape {arr.shape}")
    return arr.tobytes()


def _encode(record: DocumentRecord) -> tuple:
    if not isinstance(record, DocumentRecord):
        raise TypeError(f"expected DocumentRecord, got {type(record).__name__}")
    if not isinstance(record.id, str) or not record.id:
        raise ValueError(f"document id must be a non-empty string, got {record.id!r}")
    key = None if record.key is None else int(record.key)
    return (key, record.id, record.parent_id, record.text, _encode_meta(record), _encode_embedding(record))


def _decode(row: tuple) -> DocumentRecord:
    key, doc_id, parent_id, text, meta, embedding = row
    return DocumentRecord(
        id=doc_id,
        text=text,
        meta=json.loads(meta) if meta else {},
        parent_id=parent_id,
        embedding=None if embedding is None else np.frombuffer(embedding, dtype=np.float32).copy(),
        key=int(key),
    )


def _id_list(ids: Iterable[str], name: str = "ids") -> list[str]:
    if isinstance(ids, (str, bytes)):
        raise TypeError(f"{name} must be a list of ids, not a single string; wrap it: [{ids!r}]")
    return list(ids)


def _check_unique_ids(ids: list[str]) -> None:
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dupes = sorted({i for i in ids if i in seen or seen.add(i)})
        raise ValueError(f"document ids repeat within one call: {dupes[:10]}")


def _check_schema(conn: sqlite3.Connection, path: Path) -> None:
    """Raise ValueError unless ``conn`` holds a winnow document table (DatabaseError if not SQLite)."""
    columns = [row[1] for row in conn.execute("PRAGMA table_info(documents)").fetchall()]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    expected = [c.strip() for c in _COLUMNS.split(",")]
    if columns != expected or version != SCHEMA_VERSION:
        raise ValueError(
            f"{path} is not a winnow document table (schema version {version}, columns {columns}); "
            f"expected version {SCHEMA_VERSION} with columns {expected}"
        )


class DocumentTable:
    """Documents in SQLite (stdlib, embedded): thread-safe, one connection guarded by a lock.

    ``path=None`` keeps the table in memory. A file-backed table is written in place, in WAL mode with
    ``synchronous=FULL``: a write method returns after its transaction is on disk, so it survives a crash or
    power loss; readers in other processes see each committed transaction whole. ``read_only=True`` opens
    an existing file for reading only. Keys come from ``INTEGER PRIMARY KEY AUTOINCREMENT``, so they are
    never reused after deletion (FAISS ids stay unique), and an upserted id keeps its key. ``meta`` is stored
    as JSON (dict keys become strings, tuples lists).
    """

    def __init__(self, path: str | Path | None = None, *, read_only: bool = False) -> None:
        self._path = None if path is None else Path(path)
        self._lock = threading.RLock()
        self._tx_depth = 0
        self._read_only = bool(read_only) and self._path is not None
        if self._read_only:
            assert self._path is not None
            uri = f"{self._path.resolve().as_uri()}?mode=ro"
            self._conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
            self._has_state = bool(
                self._conn.execute(
                    "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('winnow_state', 'vector_changes')"
                ).fetchone()[0]
                == 2
            )
            return
        if self._path is not None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(
            ":memory:" if self._path is None else str(self._path), check_same_thread=False
        )
        if self._path is not None:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
        self._create_schema()
        self._has_state = True

    def _create_schema(self) -> None:
        with self._lock, self._conn:
            self._conn.executescript(_SCHEMA)
            if self._conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @contextlib.contextmanager
    def transaction(self, *, bump: bool = True) -> Iterator[DocumentTable]:
        """Hold the table's lock and make every write inside one transaction, committed (on disk, for a
        file-backed table) when the outermost block ends and rolled back if it raises. Each transaction
        that writes bumps :attr:`stamp` (``bump=False``: bookkeeping that leaves the rows as they are)."""
        with self._lock:
            if self._read_only:
                raise PermissionError(f"the document table {self._path} is open read-only")
            outer = self._tx_depth == 0
            self._tx_depth += 1
            try:
                if outer and bump:
                    self._conn.execute("UPDATE winnow_state SET value = value + 1 WHERE name = 'changes'")
                before = self._conn.total_changes
                yield self
                if outer and self._conn.total_changes == before:
                    self._conn.rollback()  # nothing written: leave the stamp as it was
                elif outer:
                    self._conn.commit()
            except BaseException:
                if outer:
                    self._conn.rollback()
                raise
            finally:
                self._tx_depth -= 1

    @property
    def in_transaction(self) -> bool:
        """Whether a :meth:`transaction` block is open (in any thread)."""
        return self._tx_depth > 0

    @property
    def read_only(self) -> bool:
        """Whether the table was opened read-only."""
        return self._read_only

    @property
    def stamp(self) -> int:
        """The number of write transactions ever committed to this database (stored in it): changes with
        every write, so data derived from the table (BM25) can tell whether it is stale."""
        if not self._has_state:
            return 0
        with self._lock:
            row = self._conn.execute("SELECT value FROM winnow_state WHERE name = 'changes'").fetchone()
        return 0 if row is None else int(row[0])

    # ------------------------------------------------------------------ vector changes
    def note_vector_changes(self, keys: Iterable[int], vectors: Sequence[np.ndarray | None] | None) -> None:
        """Record (file-backed tables only, inside :meth:`transaction`) that the vectors of ``keys`` changed:
        to ``vectors[i]`` (float32), or removed where it is None (``vectors=None``: all removed)."""
        if self._path is None:
            return
        keys = [int(k) for k in keys]
        if not keys:
            return
        if vectors is None:
            vectors = [None] * len(keys)
        with self.transaction():
            seq = self._conn.execute("SELECT value FROM winnow_state WHERE name = 'changes'").fetchone()[0]
            self._conn.executemany(
                "INSERT OR REPLACE INTO vector_changes (key, seq, vector) VALUES (?, ?, ?)",
                [
                    (k, seq, None if v is None else np.asarray(v, dtype=np.float32).tobytes())
                    for k, v in zip(keys, vectors, strict=True)
                ],
            )

    def vector_changes(self) -> tuple[np.ndarray, list[np.ndarray | None]]:
        """(keys, their new float32 vectors or None where removed) recorded since the last snapshot."""
        if not self._has_state:
            return np.empty(0, dtype=np.int64), []
        with self._lock:
            rows = self._conn.execute("SELECT key, vector FROM vector_changes ORDER BY key").fetchall()
        keys = np.array([r[0] for r in rows], dtype=np.int64)
        return keys, [None if r[1] is None else np.frombuffer(r[1], dtype=np.float32).copy() for r in rows]

    def pending_vector_changes(self) -> int:
        """How many keys :meth:`vector_changes` lists."""
        if not self._has_state:
            return 0
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM vector_changes").fetchone()[0])

    def clear_vector_changes(self, up_to: int | None = None) -> None:
        """Forget the vector changes written at :attr:`stamp` ``<= up_to`` (all when None): a snapshot holds
        them now."""
        with self.transaction(bump=False):
            if up_to is None:
                self._conn.execute("DELETE FROM vector_changes")
            else:
                self._conn.execute("DELETE FROM vector_changes WHERE seq <= ?", (int(up_to),))

    def integrity_problem(self) -> str | None:
        """None when SQLite's ``PRAGMA integrity_check`` passes, else what it reports."""
        with self._lock:
            rows = [r[0] for r in self._conn.execute("PRAGMA integrity_check").fetchall()]
        return None if rows == ["ok"] else "; ".join(str(r) for r in rows[:5])

    @property
    def path(self) -> Path | None:
        """The database file, or ``None`` for an in-memory table."""
        return self._path

    @property
    def changes(self) -> int:
        """Rows inserted, updated or deleted through this table object since it was opened: a cheap counter
        that tells a reader (e.g. a BM25 built over the table) whether it is stale."""
        with self._lock:
            return self._conn.total_changes

    def __repr__(self) -> str:
        return f"DocumentTable(path={str(self._path) if self._path else ':memory:'!r})"

    def __enter__(self) -> DocumentTable:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ writes
    def _existing_keys(self, ids: list[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for batch in _batches(ids):
            sql = f"SELECT id, key FROM documents WHERE id IN ({_placeholders(len(batch))})"
            found.update(self._conn.execute(sql, list(batch)).fetchall())
        return found

    def _write(self, records: Iterable[DocumentRecord], *, replace: bool) -> np.ndarray:
        records = list(records)
        rows = [_encode(r) for r in records]
        ids = [r[1] for r in rows]
        _check_unique_ids(ids)
        if not rows:
            return np.empty(0, dtype=np.int64)
        with self.transaction():
            existing = self._existing_keys(ids)
            if not replace and existing:
                dupes = sorted(existing)
                raise DuplicateIdError(f"document ids already stored: {dupes[:10]}; use upsert()", dupes)
            for row in rows:
                if row[0] is not None and row[1] in existing and existing[row[1]] != row[0]:
                    raise ValueError(
                        f"document {row[1]!r} already has key {existing[row[1]]}, not {row[0]}; "
                        f"leave DocumentRecord.key as None to keep the stored key"
                    )
            try:
                self._conn.executemany(_UPSERT if replace else _INSERT, rows)
            except sqlite3.IntegrityError as exc:
                raise ValueError(
                    f"could not store documents ({exc}); is an explicit key already taken?"
                ) from exc
            keys = self._existing_keys(ids)
        return np.array([keys[i] for i in ids], dtype=np.int64)

    def upsert(self, records: Iterable[DocumentRecord]) -> np.ndarray:
        """Insert or replace records by id; returns their keys (an existing id keeps its key)."""
        return self._write(records, replace=True)

    def insert(self, records: Iterable[DocumentRecord]) -> np.ndarray:
        """Insert new records; raises :class:`DuplicateIdError` (nothing written) if any id exists."""
        return self._write(records, replace=False)

    def delete(self, ids: Iterable[str]) -> np.ndarray:
        """Delete records by id (unknown ids ignored); returns the keys removed."""
        ids = list(dict.fromkeys(_id_list(ids)))
        removed: list[int] = []
        with self.transaction():
            for batch in _batches(ids):
                marks = _placeholders(len(batch))
                rows = self._conn.execute(f"SELECT key FROM documents WHERE id IN ({marks})", list(batch))
                removed.extend(r[0] for r in rows.fetchall())
                self._conn.execute(f"DELETE FROM documents WHERE id IN ({marks})", list(batch))
        return np.array(sorted(removed), dtype=np.int64)

    def delete_all(self) -> None:
        """Delete every record (keys are still never reused)."""
        with self.transaction():
            self._conn.execute("DELETE FROM documents")

    # ------------------------------------------------------------------ reads
    def _select(self, column: str, values: list, *, with_embedding: bool) -> dict:
        columns = _COLUMNS if with_embedding else _COLUMNS_NO_EMBEDDING
        found: dict = {}
        with self._lock:
            for batch in _batches(values):
                sql = f"SELECT {columns} FROM documents WHERE {column} IN ({_placeholders(len(batch))})"
                for row in self._conn.execute(sql, list(batch)).fetchall():
                    found[row[0] if column == "key" else row[1]] = row
        return found

    def get(self, ids: Iterable[str], *, with_embedding: bool = True) -> list[DocumentRecord | None]:
        """Records for ``ids`` in the same order; ``None`` where an id is unknown."""
        ids = _id_list(ids)
        found = self._select("id", list(dict.fromkeys(ids)), with_embedding=with_embedding)
        return [_decode(found[i]) if i in found else None for i in ids]

    def get_by_keys(self, keys: Iterable[int], *, with_embedding: bool = True) -> list[DocumentRecord | None]:
        """Records for FAISS ``keys`` in the same order; ``None`` where a key is unknown (or -1)."""
        keys = [int(k) for k in keys]
        found = self._select(
            "key", list(dict.fromkeys(k for k in keys if k >= 0)), with_embedding=with_embedding
        )
        return [_decode(found[k]) if k in found else None for k in keys]

    def keys_for(self, ids: Iterable[str]) -> np.ndarray:
        """Keys of ``ids`` in order, -1 where an id is unknown."""
        ids = _id_list(ids)
        with self._lock:
            found = self._existing_keys(list(dict.fromkeys(ids)))
        return np.array([found.get(i, -1) for i in ids], dtype=np.int64)

    def all_keys(self) -> np.ndarray:
        """Sorted int64 array of every key."""
        with self._lock:
            rows = self._conn.execute("SELECT key FROM documents ORDER BY key").fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def keys_where(self, where_sql: str, params: Sequence[object] = ()) -> np.ndarray:
        """Sorted int64 keys of the rows matching an SQL ``WHERE`` clause over the ``documents`` columns
        (``key, id, parent_id, text, meta``; ``meta`` is JSON text, read with ``json_extract``).

        ``where_sql`` must come from code, never from a user: values go in ``params`` (``?`` placeholders).
        """
        with self._lock:
            rows = self._conn.execute(
                f"SELECT key FROM documents WHERE {where_sql} ORDER BY key", list(params)
            ).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def select_integers(self, select_sql: str, params: Sequence[object] = ()) -> np.ndarray:
        """The int64 values of a one-column ``SELECT`` over the table, in the order SQLite gives them (for
        queries :meth:`keys_where` cannot express, e.g. keys flagged by sign). Built by code, never a user."""
        with self._lock:
            rows = self._conn.execute(select_sql, list(params)).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0])

    def __len__(self) -> int:
        return self.count()

    def iter_records(
        self, batch_size: int = 1000, *, with_embedding: bool = True
    ) -> Iterator[DocumentRecord]:
        """All records in key order, fetched ``batch_size`` at a time (the lock is held per batch only)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        columns = _COLUMNS if with_embedding else _COLUMNS_NO_EMBEDDING
        last = -1
        while True:
            with self._lock:
                rows = self._conn.execute(
                    f"SELECT {columns} FROM documents WHERE key > ? ORDER BY key LIMIT ?", (last, batch_size)
                ).fetchall()
            if not rows:
                return
            yield from (_decode(row) for row in rows)
            last = rows[-1][0]

    def ids_for_parent(self, parent_ids: Iterable[str]) -> list[str]:
        """Ids of records whose ``parent_id`` is one of ``parent_ids`` (a document's chunks), by key."""
        parents = list(dict.fromkeys(_id_list(parent_ids, "parent_ids")))
        rows: list[tuple[int, str]] = []
        with self._lock:
            for batch in _batches(parents):
                sql = f"SELECT key, id FROM documents WHERE parent_id IN ({_placeholders(len(batch))})"
                rows.extend(self._conn.execute(sql, list(batch)).fetchall())
        return [doc_id for _, doc_id in sorted(rows)]

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Close the connection; the table is unusable afterwards."""
        with self._lock:
            self._conn.close()

    def copy(self) -> DocumentTable:
        """An in-memory copy of the whole table, taken under the lock (a page copy in memory, no disk)."""
        clone = DocumentTable(None)
        with self._lock, clone._lock:
            self._conn.backup(clone._conn)
        return clone

    def backup_to(self, path: str | Path) -> Path:
        """Copy the whole database to a single self-contained file at ``path`` (SQLite backup API)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        dest = sqlite3.connect(str(path))
        try:
            with self._lock:
                self._conn.backup(dest)
            dest.execute("PRAGMA journal_mode=DELETE")  # one file, no -wal sidecar
            dest.commit()
        finally:
            dest.close()
        return path

    @classmethod
    def load_from(
        cls, path: str | Path, into_memory: bool = True, *, read_only: bool = False
    ) -> DocumentTable:
        """Open a table saved by :meth:`backup_to` (or any file-backed table).

        ``into_memory=True`` copies it into an in-memory table, leaving the file free to be replaced;
        ``into_memory=False`` opens it in place (``read_only`` for reading only).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"document table {path} does not exist")
        source = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            _check_schema(source, path)
            if not into_memory:
                source.close()
                return cls(path, read_only=read_only)
            table = cls(None)
            with table._lock:
                source.backup(table._conn)
            return table
        finally:
            source.close()
