"""An index directory (vectors, documents, manifest): opened in place, written incrementally, checked on load.

Opening (:meth:`WinnowIndex.load`) does not copy the index: ``documents.sqlite`` is the live table, opened in
place (SQLite WAL, ``synchronous=FULL``), and ``vectors.faiss`` is read (memory-mapped when opened
``read_only``, see :meth:`VectorIndex.load`). A loaded index writes in place: every write is one SQLite
transaction that changes the rows and lists the keys whose vectors changed, with their new vectors, in the
table ``vector_changes``; it is on disk when the write method returns (an acknowledged write survives
SIGKILL and power loss). ``vectors.faiss`` is a snapshot: opening reads it and replays the listed changes
(idempotent: remove the key, re-add its vector). COMPACTION (:meth:`WinnowIndex.compact`, automatic once the
changes pass ``max(COMPACT_MIN_CHANGES, COMPACT_FRACTION * vectors)``, and ``winnow index --compact``) writes
a new snapshot, its attachments and manifest into ``INDEX/.compact/``, fsynced, then moves them into place
under an exclusive ``flock`` on ``INDEX/.lock`` (the manifest last) and forgets the changes it holds. A crash
mid-way is finished by the next open (the staged manifest marks a complete stage; an incomplete one is
dropped); a crash before the changes are forgotten only replays them again. Readers in other processes open
under a shared lock, so they never pair a new snapshot with an old change list; they see the table as it
is committed.

The manifest records the sha256, size and ``mtime_ns`` of each file but the live table. Loading compares
size and mtime only: a different size is refused; a different mtime (a copy without ``cp -p``, a touched
file) has that file hashed, so the load is slower but changed content is never accepted. Manifests from
before sizes and mtimes were recorded are checked by hashing every file, as before. :func:`verify_index`
(``winnow index --verify``) hashes every file on demand and runs SQLite's ``PRAGMA integrity_check`` on the
table. Size and mtime cannot catch a same-size edit whose mtime was set back by hand.
``manifest.table_changes`` is the table's write counter (:attr:`DocumentTable.stamp`) when the snapshot was
taken: data derived from the table (attachments) is current only while the table's counter still equals it.

Saving to another directory (or an in-memory index, from :meth:`WinnowIndex.create`) copies the index in
memory under its lock, then writes, hashes and fsyncs without it, into ``.NAME.tmp-*`` beside the target, and
swaps it in with two renames (the old index goes to ``.NAME.old-*`` meanwhile). Saving a loaded index to its
own directory is a compaction. :func:`recover_interrupted_save` puts back an index a crash between the
renames left aside and removes leftover folders; ``winnow serve`` calls it at start.

Attachments: derived data saved with the index in a subfolder (BM25 in ``bm25/``), written by a writer that
an upper layer registers with :func:`register_attachment` (this package imports no retriever). An index saves
the attachments it keeps (:meth:`WinnowIndex.keep_attachment`; a loaded index keeps those its manifest lists):
a save calls their writers with the table copy it saves, into the same temporary directory, so the swap
covers them (an attachment without a registered writer is left out, and rebuilt by its owner); a
compaction calls them with the live table, into its stage. Their files are hashed and listed in the manifest
like the data files (``--verify`` checks them), and ``attachments[NAME]`` records the writer's state and the
table it was built from (:func:`attachment_state`). An index without an attachment still loads; its owner
rebuilds what is missing.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import errno
import json
import logging
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

try:  # POSIX advisory locks keep readers from pairing a new vector snapshot with an old change list
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock (one process per index there)
    fcntl = None  # type: ignore[assignment]

from ._fsutil import fsync_dir, fsync_file, is_disk_full, sha256_file
from .document_table import DocumentRecord, DocumentTable
from .errors import (
    EmbedderMismatchError,
    IndexCorruptedError,
    IndexNotFoundError,
    StorageFullError,
    UnsupportedIndexFormatError,
    WinnowIndexError,
)
from .vector_index import VectorIndex, VectorSnapshot, as_float32_matrix

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
VECTORS_FILE = "vectors.faiss"
VECTOR_STATE_FILE = VectorIndex.state_path(VECTORS_FILE).name  # tombstones + search settings
DOCUMENTS_FILE = "documents.sqlite"
DATA_FILES = (VECTORS_FILE, VECTOR_STATE_FILE, DOCUMENTS_FILE)
HASHED_FILES = (VECTORS_FILE, VECTOR_STATE_FILE)  # the live table is checked by SQLite, not by sha256
LOCK_FILE = ".lock"
STAGING_DIR = ".compact"  # a compaction's files before they are moved into place
COMPACT_MIN_CHANGES = 10_000
COMPACT_FRACTION = 0.10
AttachmentWriter = Callable[["WinnowIndex", DocumentTable, int, Path], "dict | None"]
_ATTACHMENT_WRITERS: dict[str, AttachmentWriter] = {}
_TMP_PREFIX = ".{name}.tmp-"
_OLD_PREFIX = ".{name}.old-"


@dataclass
class IndexManifest:
    """``manifest.json``: what built the index, its shape, and a sha256, size and mtime per data file."""

    format_version: int
    embedder: str
    dim: int
    metric: str
    factory: str
    count: int
    files: dict[str, str]
    created_at: str
    extra: dict = field(default_factory=dict)
    documents: int | None = None  # table rows (``count`` counts vectors); None in manifests from before rows
    # without vectors existed, where the two were equal
    file_stats: dict[str, dict[str, int]] | None = None  # name -> {"size", "mtime_ns"}; None in manifests
    # from before they were recorded, whose files are all hashed on load
    attachments: dict[str, dict] | None = None  # name -> {"state": writer's state, "table": table stamp}
    table_changes: int | None = None  # the table's write counter (DocumentTable.stamp) at the snapshot; None
    # in manifests from before the table was written in place

    @property
    def document_count(self) -> int:
        """Number of table rows (documents with and without a vector)."""
        return self.count if self.documents is None else self.documents

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> IndexManifest:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("manifest is not a JSON object")
        names = [f.name for f in dataclasses.fields(cls)]
        optional = {"documents", "file_stats", "attachments", "table_changes"}
        missing = [n for n in names if n not in data and n not in optional]
        if missing:
            raise ValueError(f"manifest lacks fields {missing}")
        return cls(**{n: data[n] for n in names if n in data})


def read_manifest(path: str | Path) -> IndexManifest:
    """Read and parse ``path/manifest.json`` (cheap: checks nothing else)."""
    path = Path(path)
    manifest_path = path / MANIFEST_FILE
    if not manifest_path.is_file():
        olds = [p for p in _leftovers(path.absolute(), _OLD_PREFIX) if (p / MANIFEST_FILE).is_file()]
        if olds:
            raise IndexNotFoundError(
                f"{path} has no {MANIFEST_FILE}, but an interrupted save left the previous index in "
                f"{olds[-1]}; start `winnow serve --index {path}` (it restores it) or move it back to {path}"
            )
        raise IndexNotFoundError(
            f"{path} is not a winnow index (no {MANIFEST_FILE}); build one with `winnow index --out {path}`"
        )
    try:
        return IndexManifest.from_json(manifest_path.read_text(encoding="utf-8"))
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise IndexCorruptedError(f"{manifest_path} is unreadable: {exc}", file=MANIFEST_FILE) from exc


def register_attachment(name: str, writer: AttachmentWriter) -> None:
    """Write derived data ``name`` into subfolder ``INDEX/name`` when an index that keeps it is saved.

    ``writer(index, table, generation, folder)`` runs outside the index lock with ``table``, the copy being
    saved (the index's state at :attr:`WinnowIndex.generation` ``generation``); it writes into ``folder`` and
    returns a JSON-able state for the manifest, or None to save nothing. Registering a name again replaces
    its writer.
    """
    if not name or "/" in name or name.startswith(".") or name in DATA_FILES or name == MANIFEST_FILE:
        raise ValueError(f"invalid attachment name {name!r}")
    _ATTACHMENT_WRITERS[name] = writer


def _table_stamp(manifest: IndexManifest) -> dict:
    """Which table an attachment was built from: its row count and write counter (older manifests: the
    sha256 of its file)."""
    if manifest.table_changes is None:
        return {"documents": manifest.document_count, "sha256": manifest.files.get(DOCUMENTS_FILE)}
    return {"documents": manifest.document_count, "changes": manifest.table_changes}


def attachment_state(path: str | Path, manifest: IndexManifest, name: str) -> dict | None:
    """The state its writer recorded for attachment ``name`` of the index at ``path``, or None when there is
    none, it was built from another table than the manifest's (stale), or one of its files differs from the
    manifest in size (or, with a changed mtime, in sha256). Cheap unless a file's mtime changed."""
    entry = (manifest.attachments or {}).get(name)
    if not entry or entry.get("table") != _table_stamp(manifest):
        return None
    names = attachment_files(manifest, name)
    if not names:
        return None
    manifest_mtime_ns = (Path(path) / MANIFEST_FILE).stat().st_mtime_ns
    for file in names:
        if problem := _file_problem(Path(path), file, manifest, manifest_mtime_ns):
            logger.warning("ignoring the saved %s: %s", name, problem)
            return None
    return dict(entry.get("state") or {})


def attachment_files(manifest: IndexManifest, name: str) -> list[str]:
    """The manifest's files of attachment ``name`` (paths relative to the index directory)."""
    return sorted(f for f in manifest.files if f.startswith(f"{name}/"))


class WinnowIndex:
    """A vector index and its document table kept consistent: the table's ``key`` is the vector id.

    Every vector has a table row; a row may have no vector (pass ``vectors=None`` or ``has_vector`` to
    :meth:`add_records`/:meth:`upsert_records`): it is stored and read like any other but never found by
    :meth:`search`. ``len(index)`` counts vectors (the searchable rows), ``index.table.count()`` all rows.
    Build with :meth:`create`, or pass existing parts. ``embedder`` names the model that made the vectors;
    ``extra`` carries free-form build settings (e.g. chunking) into the manifest. All methods are thread-safe.
    A loaded index writes in place (see the module docstring); one from :meth:`create` lives in memory until
    :meth:`save`.
    """

    def __init__(
        self,
        vectors: VectorIndex,
        table: DocumentTable | None = None,
        *,
        embedder: str,
        extra: dict | None = None,
    ) -> None:
        self.vectors = vectors
        self.table = DocumentTable() if table is None else table
        self.embedder = embedder
        self.extra = dict(extra or {})
        self._lock = threading.RLock()
        self._save_lock = threading.Lock()  # one save at a time; readers are not held up
        self.generation = 0  # counts writes in this process (see mark_changed)
        self.attachments: set[str] = set()  # names of the attachments its saves write
        self.derived: dict[str, Any] = {}  # caches of upper layers (e.g. BM25), keyed by their name
        # the directory last loaded from or saved to, its manifest and the generation saved there (on_disk)
        self.path: Path | None = None
        self.manifest: IndexManifest | None = None
        self.saved_generation: int | None = None

    @classmethod
    def create(
        cls,
        dim: int,
        *,
        embedder: str,
        factory: str = "Flat",
        metric: str = "ip",
        normalize: bool | None = None,
        ef_search: int = 128,
        nprobe: int = 16,
        extra: dict | None = None,
    ) -> WinnowIndex:
        """A new empty index with an in-memory document table."""
        vectors = VectorIndex(dim, factory, metric, normalize=normalize, ef_search=ef_search, nprobe=nprobe)
        return cls(vectors, DocumentTable(), embedder=embedder, extra=extra)

    @property
    def lock(self) -> threading.RLock:
        """The re-entrant lock every method takes; hold it to make several calls one atomic change."""
        return self._lock

    def keep_attachment(self, name: str) -> None:
        """Save attachment ``name`` with this index from now on (see :func:`register_attachment`)."""
        with self._lock:
            self.attachments.add(name)

    def mark_changed(self) -> None:
        """Count a write (every write method calls it; call it after writing to ``table`` directly), so
        derived data keyed by :attr:`generation` is known to be stale."""
        with self._lock:
            self.generation += 1

    @property
    def live_dir(self) -> Path | None:
        """The index directory whose ``documents.sqlite`` is this index's table (written in place), or None
        for an in-memory table."""
        table_path = self.table.path
        if table_path is None or table_path.name != DOCUMENTS_FILE:
            return None
        return table_path.parent.absolute()

    def pending_changes(self) -> int:
        """Vectors changed since the snapshot in ``vectors.faiss`` (0 for an in-memory index)."""
        return self.table.pending_vector_changes() if self.live_dir is not None else 0

    def on_disk(self) -> tuple[Path, IndexManifest] | None:
        """(directory, manifest) of the saved index this one equals (no write since its load, save or
        compaction, and none by another process since the manifest was written)."""
        with self._lock:
            if self.path is None or self.manifest is None or self.saved_generation != self.generation:
                return None
            return self.path, self.manifest

    def __len__(self) -> int:
        """Number of vectors (searchable rows); rows without a vector are counted by ``table.count()``."""
        return len(self.vectors)

    def __repr__(self) -> str:
        return f"WinnowIndex(embedder={self.embedder!r}, vectors={self.vectors!r})"

    # ------------------------------------------------------------------ writes
    def _check_batch(
        self, records: Sequence[DocumentRecord], vectors: object, has_vector: object
    ) -> tuple[np.ndarray, np.ndarray]:
        """(which records get a vector, their float32 vectors in record order)."""
        if has_vector is None:
            mask = np.full(len(records), vectors is not None)
        else:
            mask = np.asarray(has_vector, dtype=bool)
            if mask.shape != (len(records),):
                raise ValueError(
                    f"has_vector has shape {mask.shape} for {len(records)} records; pass one flag each"
                )
        if vectors is None:
            if mask.any():
                raise ValueError("has_vector marks records as having vectors, but vectors is None")
            return mask, np.empty((0, self.vectors.dim), dtype=np.float32)
        x = as_float32_matrix(vectors, self.vectors.dim)
        if int(mask.sum()) != x.shape[0]:
            what = "records" if has_vector is None else "records marked in has_vector"
            raise ValueError(
                f"got {int(mask.sum())} {what} for {x.shape[0]} vectors; pass one vector per record"
            )
        self.vectors.check_trained()
        return mask, x

    @staticmethod
    def _with_embeddings(
        records: Sequence[DocumentRecord], mask: np.ndarray, x: np.ndarray
    ) -> list[DocumentRecord]:
        vector_of = dict(zip(np.flatnonzero(mask).tolist(), x, strict=True))
        return [
            dataclasses.replace(r, embedding=vector_of[i]) if i in vector_of and r.embedding is None else r
            for i, r in enumerate(records)
        ]

    def add_records(
        self,
        records: Iterable[DocumentRecord],
        vectors: object = None,
        *,
        has_vector: object = None,
        store_embeddings: bool = False,
    ) -> np.ndarray:
        """Insert new records and their vectors; returns the keys. Nothing is written if either side fails.

        ``vectors`` holds one row per record, or per record flagged in the boolean ``has_vector``;
        ``vectors=None`` stores table rows only. ``store_embeddings=True`` also stores each vector in the
        table for records without an embedding.
        """
        records = list(records)
        mask, x = self._check_batch(records, vectors, has_vector)
        if store_embeddings:
            records = self._with_embeddings(records, mask, x)
        with self._lock:
            added = False
            try:
                with self.table.transaction():  # rows and change list commit together, or not at all
                    keys = self.table.insert(records)
                    self.table.note_vector_changes(keys[mask], list(x))
                    if x.shape[0]:
                        self.vectors.add(keys[mask], x)  # last: an error before it rolls the rows back
                        added = True
            except BaseException:
                if added:  # the commit failed: take the vectors back out
                    self.vectors.remove(keys[mask])
                raise
            self.generation += 1
        self._after_write()
        return keys

    def upsert_records(
        self,
        records: Iterable[DocumentRecord],
        vectors: object = None,
        *,
        has_vector: object = None,
        store_embeddings: bool = False,
    ) -> np.ndarray:
        """Insert or replace records and their vectors by document id; returns the keys.

        ``vectors``/``has_vector`` as in :meth:`add_records`; a replaced record without a new vector loses
        its old one.
        """
        records = list(records)
        mask, x = self._check_batch(records, vectors, has_vector)
        if store_embeddings:
            records = self._with_embeddings(records, mask, x)
        with self._lock:
            with self.table.transaction():
                keys = self.table.upsert(records)
                dropped = keys[~mask]
                dropped = dropped[self.vectors.contains(dropped)] if dropped.size else dropped
                self.table.note_vector_changes(dropped, None)
                self.table.note_vector_changes(keys[mask], list(x))
                self.vectors.remove(dropped)
                if x.shape[0]:
                    self.vectors.upsert(keys[mask], x)
            self.generation += 1
        self._after_write()
        return keys

    def delete_ids(self, ids: Iterable[str]) -> int:
        """Delete documents and their vectors by id (unknown ids ignored); returns how many were deleted."""
        with self._lock:
            with self.table.transaction():
                keys = self.table.delete(ids)
                gone = keys[self.vectors.contains(keys)] if keys.size else keys
                self.table.note_vector_changes(gone, None)
                self.vectors.remove(gone)
            self.generation += 1
        self._after_write()
        return int(keys.size)

    def delete_all(self) -> None:
        """Delete every document and vector (a trained index stays trained)."""
        with self._lock:
            with self.table.transaction():
                self.table.delete_all()
                self.table.note_vector_changes(self.vectors.ids(), None)
                self.vectors.reset()
            self.generation += 1
        self._after_write()

    def _after_write(self) -> None:
        """Compact a live index whose changes passed the threshold; a failure is logged (the write is
        committed and its change stays listed), and the next write tries again."""
        try:
            self.compact_if_due()
        except Exception:  # noqa: BLE001 - nothing is lost: the table lists every change
            logger.exception("compacting %s failed; the next write tries again", self.live_dir)

    def compact_if_due(self) -> bool:
        """:meth:`compact` when this index is live and its vector changes since the snapshot exceed
        ``max(COMPACT_MIN_CHANGES, COMPACT_FRACTION * vectors)``; returns whether it compacted. Skipped while
        a save or compaction runs (they take the save lock first, so waiting here could deadlock)."""
        if self.live_dir is None or self.table.read_only or self.table.in_transaction:
            return False  # inside a caller's transaction the snapshot would hold uncommitted changes
        pending = self.table.pending_vector_changes()
        if pending <= max(COMPACT_MIN_CHANGES, COMPACT_FRACTION * len(self.vectors)):
            return False
        if not self._save_lock.acquire(blocking=False):
            return False
        try:
            logger.info("compacting %s: %d vector changes since its snapshot", self.live_dir, pending)
            self._compact_in_place()
        finally:
            self._save_lock.release()
        return True

    # ------------------------------------------------------------------ search
    def search(
        self,
        query_vectors: object,
        k: int,
        allow_doc_ids: Iterable[str] | None = None,
        *,
        allow_keys: np.ndarray | None = None,
        return_embedding: bool = False,
    ) -> list[list[tuple[DocumentRecord, float]]]:
        """Top-``k`` (record, score) per query, best first; ``allow_doc_ids`` (document ids) or ``allow_keys``
        (table keys, e.g. from :meth:`DocumentTable.keys_where`) restricts to those documents."""
        if allow_doc_ids is not None and allow_keys is not None:
            raise ValueError("pass allow_doc_ids or allow_keys, not both")
        if allow_doc_ids is not None:
            allow_keys = self.table.keys_for(allow_doc_ids)
            allow_keys = allow_keys[allow_keys >= 0]
        elif allow_keys is not None:
            allow_keys = np.asarray(allow_keys, dtype=np.int64)
        with self._lock:
            scores, keys = self.vectors.search(query_vectors, k, allow_ids=allow_keys)
            found = self.table.get_by_keys(np.unique(keys[keys >= 0]), with_embedding=return_embedding)
        by_key = {r.key: r for r in found if r is not None}
        handed_out: set[int] = set()
        results: list[list[tuple[DocumentRecord, float]]] = []
        for row_scores, row_keys in zip(scores, keys, strict=True):
            row = []
            for score, key in zip(row_scores, row_keys, strict=True):
                if key < 0:
                    break
                record = by_key.get(int(key))
                if record is None:
                    logger.warning("vector id %d has no document in the table; skipped", key)
                    continue
                if record.key in handed_out:  # the same document in several rows: give each its own copy
                    record = copy.deepcopy(record)
                handed_out.add(int(key))
                row.append((record, float(score)))
            results.append(row)
        return results

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path, *, open_in_place: bool = False) -> IndexManifest:
        """Save atomically to directory ``path``, replacing an existing index there.

        When ``path`` is the directory this index is live in (:attr:`live_dir`), this is :meth:`compact`.
        Otherwise the vectors and the table are copied in memory under the index lock; the files are
        written, hashed and fsynced after releasing it (searches and lookups go on meanwhile), into a
        temporary directory next to ``path``. Then the old directory is renamed aside, the new one renamed
        into place and the old one removed. On any error the previous directory stays as it was; a crash
        between the two renames leaves it as ``.NAME.old-*`` beside, which :func:`recover_interrupted_save`
        restores. The attachments it keeps are written into the temporary directory too, from the table copy.
        ``open_in_place=True`` then makes the saved directory this index's home: its table is reopened from
        there and later writes go there in place (skipped, with a warning, when a write came in meanwhile).
        A full disk raises :class:`StorageFullError`.
        """
        target = Path(path).absolute()
        live = self.live_dir
        if live is not None and live.resolve() == target.resolve():
            return self.compact()
        _check_replaceable(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        with self._save_lock:
            with self._lock:
                orphans = _vectors_without_rows(self.vectors, self.table)
                if orphans.size:
                    raise WinnowIndexError(
                        f"refusing to save: {orphans.size} vector ids have no document row, "
                        f"e.g. {orphans[:5].tolist()}"
                    )
                vectors = self.vectors.snapshot()
                table = self.table.copy()
                generation = self.generation
                writers = self._attachment_writers(generation)
            table.clear_vector_changes()  # the copy's snapshot holds every vector
            manifest = self._new_manifest(vectors.count, table.count(), table.stamp)
            try:
                tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
                try:
                    _write_files(tmp, vectors, table, manifest, writers)
                    _swap_into_place(tmp, target)
                except BaseException:
                    shutil.rmtree(tmp, ignore_errors=True)
                    raise
            except Exception as exc:
                if is_disk_full(exc):
                    raise StorageFullError(
                        errno.ENOSPC,
                        f"no space left to save the index to {target} ({exc}); the previous save is intact. "
                        f"Free disk space (or raise the quota) on {target.parent}",
                    ) from exc
                raise
            finally:
                table.close()
            with self._lock:
                if not open_in_place:
                    self.path, self.manifest, self.saved_generation = target, manifest, generation
                elif self.generation != generation:
                    logger.warning("not opening %s in place: the index changed while it was saved", target)
                else:
                    self.table = DocumentTable.load_from(target / DOCUMENTS_FILE, into_memory=False)
                    self.path, self.manifest, self.saved_generation = target, manifest, generation
        logger.info(
            "Saved index with %d documents (%d vectors) to %s", manifest.documents, manifest.count, target
        )
        return manifest

    def _new_manifest(self, count: int, documents: int, table_changes: int) -> IndexManifest:
        return IndexManifest(
            format_version=FORMAT_VERSION,
            embedder=self.embedder,
            dim=self.vectors.dim,
            metric=self.vectors.metric,
            factory=self.vectors.factory,
            count=count,
            documents=documents,
            files={},
            created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            extra=copy.deepcopy(self.extra),
            table_changes=table_changes,
        )

    def compact(self) -> IndexManifest:
        """Write a new vector snapshot (and the attachments and manifest) into the directory this index is
        live in and forget the changes it holds (see the module docstring). The table is not copied; searches
        and writes go on while the files are written. Raises :class:`WinnowIndexError` for an index that is
        not live in a directory (use :meth:`save`) or was opened read-only."""
        with self._save_lock:
            return self._compact_in_place()

    def _compact_in_place(self) -> IndexManifest:
        target = self.live_dir
        if target is None:
            raise WinnowIndexError("this index is not open in an index directory; save(path) writes one")
        if self.table.read_only:
            raise WinnowIndexError(f"{target} was opened read-only; load it without read_only to compact it")
        with self._lock:
            vectors = self.vectors.snapshot()
            stamp = self.table.stamp
            generation = self.generation
            writers = self._attachment_writers(generation)
            manifest = self._new_manifest(vectors.count, self.table.count(), stamp)
        try:
            with _dir_lock(target, exclusive=True):
                _finish_compaction(target)  # a stage left by a crash: moved in, or dropped if incomplete
            staging = target / STAGING_DIR
            staging.mkdir()
            try:
                _write_files(staging, vectors, self.table, manifest, writers, with_table=False)
                with _dir_lock(target, exclusive=True):
                    _finish_compaction(target)
            finally:
                if not (staging / MANIFEST_FILE).is_file():  # a complete stage is finished by the next open
                    shutil.rmtree(staging, ignore_errors=True)
        except Exception as exc:
            if is_disk_full(exc):
                raise StorageFullError(
                    errno.ENOSPC,
                    f"no space left to compact the index in {target} ({exc}); it is intact (every write is "
                    f"in its table). Free disk space (or raise the quota) on {target}",
                ) from exc
            raise
        self.table.clear_vector_changes(up_to=stamp)
        with self._lock:
            self.path, self.manifest, self.saved_generation = target, manifest, generation
        logger.info(
            "Compacted index %s: %d documents, %d vectors, snapshot at table change %d",
            target,
            manifest.documents,
            manifest.count,
            stamp,
        )
        return manifest

    def _attachment_writers(self, generation: int) -> dict[str, Callable[[DocumentTable, Path], dict | None]]:
        return {
            name: (lambda table, folder, w=_ATTACHMENT_WRITERS[name]: w(self, table, generation, folder))
            for name in sorted(self.attachments)
            if name in _ATTACHMENT_WRITERS
        }

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        expected_embedder: str | None = None,
        verify_checksums: bool = True,
        read_only: bool = False,
    ) -> WinnowIndex:
        """Open and check an index directory in place: the table stays on disk and later writes go there.

        The vector snapshot is read and the changes listed since it replayed; ``read_only=True`` (searches,
        evaluations) opens the table for reading only and memory-maps the snapshot when no change is listed
        (:meth:`VectorIndex.load`; with changes it is read, so they can be replayed in memory). Each hashed
        file's size and mtime are compared with the manifest's: a different size is refused, a different
        mtime has the file hashed against its sha256 (see the module docstring). ``verify_checksums=False``
        skips both (tests use it to reach the readers). Attachments are not read here: their owners check
        them (:func:`attachment_state`) and load them when they need them. The log line reports the size of
        the files and the process' RSS (:func:`process_rss_bytes`).

        Raises :class:`IndexNotFoundError`, :class:`UnsupportedIndexFormatError`,
        :class:`EmbedderMismatchError` (when ``expected_embedder`` differs from the one that built it) or
        :class:`IndexCorruptedError` (missing file, checksum mismatch, unreadable file, inconsistent counts).
        """
        path = Path(path)
        manifest = read_manifest(path)
        if manifest.format_version != FORMAT_VERSION:
            raise UnsupportedIndexFormatError(
                f"{path} has index format version {manifest.format_version}; this winnow reads version "
                f"{FORMAT_VERSION}. Re-index the corpus with this version (or use the winnow that built it)."
            )
        if expected_embedder is not None and expected_embedder != manifest.embedder:
            raise EmbedderMismatchError(
                index_embedder=manifest.embedder, requested_embedder=expected_embedder, path=str(path)
            )
        if (path / STAGING_DIR / MANIFEST_FILE).is_file():  # a compaction died moving its files
            with _dir_lock(path, exclusive=True):
                if _finish_compaction(path):
                    logger.warning("finished the compaction of %s that was interrupted", path)
        with _dir_lock(path, exclusive=False):
            manifest = read_manifest(path)  # as of the files this lock keeps in place
            _check_files(path, manifest, verify_checksums)
            table = _load_part(
                path,
                DOCUMENTS_FILE,
                lambda file: DocumentTable.load_from(file, into_memory=False, read_only=read_only),
            )
            try:
                keys, changed = _load_part(path, DOCUMENTS_FILE, lambda _: table.vector_changes())
                mmap = read_only and keys.size == 0
                vectors = _load_part(path, VECTORS_FILE, lambda file: VectorIndex.load(file, mmap=mmap))
            except BaseException:
                table.close()
                raise
        try:
            _replay(path, vectors, keys, changed)
            unchanged = keys.size == 0 and table.stamp == (manifest.table_changes or 0)
            _check_consistency(path, manifest, vectors, table, counts=unchanged)
        except IndexCorruptedError:
            table.close()
            raise
        rss = process_rss_bytes()
        logger.info(
            "Loaded index with %d documents (%d vectors) from %s (embedder %s; %.1f MiB on disk, RSS %s; "
            "vectors %s, %d changes since the snapshot replayed)",
            manifest.document_count if unchanged else table.count(),
            len(vectors),
            path,
            manifest.embedder,
            index_disk_bytes(path) / 2**20,
            "unknown" if rss is None else f"{rss / 2**20:.1f} MiB",
            "memory-mapped" if vectors.memory_mapped else "read",
            keys.size,
        )
        index = cls(vectors, table, embedder=manifest.embedder, extra=manifest.extra)
        index.path, index.manifest = path.absolute(), manifest
        index.saved_generation = 0 if unchanged else None  # written since: attachments may be stale
        index.attachments.update(manifest.attachments or {})
        return index


def _replay(path: Path, vectors: VectorIndex, keys: np.ndarray, changed: list[np.ndarray | None]) -> None:
    """Apply the vector changes listed since the snapshot (idempotent: remove each key, re-add its vector)."""
    if keys.size == 0:
        return
    try:
        vectors.remove(keys)
        has = np.array([v is not None for v in changed], dtype=bool)
        if has.any():
            vectors.add(keys[has], np.stack([v for v in changed if v is not None]))
    except Exception as exc:
        raise IndexCorruptedError(
            f"{path / DOCUMENTS_FILE} lists vector changes that do not apply to {path / VECTORS_FILE}: {exc}",
            file=DOCUMENTS_FILE,
        ) from exc


def process_rss_bytes() -> int | None:
    """This process' resident set size in bytes (``VmRSS`` of ``/proc/self/status``), None where unknown."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def index_disk_bytes(path: str | Path) -> int:
    """Bytes of every file under the index directory ``path`` (the table's WAL included)."""
    total = 0
    for file in Path(path).rglob("*"):
        with contextlib.suppress(OSError):
            if file.is_file():
                total += file.stat().st_size
    return total


def _check_replaceable(target: Path) -> None:
    if target.exists() and not target.is_dir():
        raise WinnowIndexError(f"cannot save an index to {target}: it exists and is not a directory")
    if target.is_dir() and not (target / MANIFEST_FILE).is_file() and any(target.iterdir()):
        raise WinnowIndexError(
            f"refusing to overwrite {target}: it is a non-empty directory without {MANIFEST_FILE}, "
            f"so not a winnow index; choose another path or empty it"
        )


def _write_files(
    folder: Path,
    vectors: VectorSnapshot,
    table: DocumentTable,
    manifest: IndexManifest,
    attachments: dict[str, Callable[[DocumentTable, Path], dict | None]] | None = None,
    *,
    with_table: bool = True,
) -> None:
    """Write data files (the table too unless ``with_table=False``), attachments and manifest (their sha256,
    size and mtime; not the table's, which changes in place) into ``folder``, fsynced; the manifest last."""
    vectors.save(folder / VECTORS_FILE)
    if with_table:
        table.backup_to(folder / DOCUMENTS_FILE)
        fsync_file(folder / DOCUMENTS_FILE)
    names = list(HASHED_FILES)
    states: dict[str, dict] = {}
    for name, write in (attachments or {}).items():
        sub = folder / name
        sub.mkdir()
        state = write(table, sub)
        if state is None:
            shutil.rmtree(sub)
            continue
        states[name] = state
        names += sorted(p.relative_to(folder).as_posix() for p in sub.rglob("*") if p.is_file())
        fsync_dir(sub)
    manifest.file_stats = {}
    for name in names:
        fsync_file(folder / name)
        manifest.files[name] = sha256_file(folder / name)
        stat = (folder / name).stat()
        manifest.file_stats[name] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    if states:
        stamp = _table_stamp(manifest)
        manifest.attachments = {name: {"state": state, "table": stamp} for name, state in states.items()}
    tmp_manifest = folder / f".{MANIFEST_FILE}.tmp"
    tmp_manifest.write_text(manifest.to_json(), encoding="utf-8")
    fsync_file(tmp_manifest)
    os.replace(tmp_manifest, folder / MANIFEST_FILE)
    fsync_dir(folder)


@contextlib.contextmanager
def _dir_lock(folder: Path, *, exclusive: bool) -> Any:
    """An advisory ``flock`` on ``folder/.lock``: exclusive while a compaction moves files into place,
    shared while an open reads them. No lock where the file cannot be opened (a read-only copy)."""
    fd = -1
    if fcntl is not None:
        try:
            fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            try:
                fd = os.open(folder / LOCK_FILE, os.O_RDONLY)
            except OSError:
                fd = -1
    try:
        if fd >= 0:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        if fd >= 0:
            os.close(fd)  # releases the lock


def _between_compaction_moves() -> None:
    """Called by :func:`_finish_compaction` after the vector files are moved; tests make it crash here."""


def _finish_compaction(folder: Path) -> bool:
    """Move a complete compaction stage (``folder/.compact`` with its manifest) into place, the manifest
    last, or drop an incomplete one; returns True when one was moved. Idempotent; call under the exclusive
    :func:`_dir_lock`."""
    staging = folder / STAGING_DIR
    if not staging.is_dir():
        return False
    if not (staging / MANIFEST_FILE).is_file():
        shutil.rmtree(staging, ignore_errors=True)
        return False
    for entry in sorted(staging.iterdir(), key=lambda e: (e.is_dir(), e.name)):
        if entry.name == MANIFEST_FILE or entry.name.startswith("."):
            continue
        dest = folder / entry.name
        if entry.is_dir():
            aside = folder / f".{entry.name}.old-compact"
            if dest.exists():
                shutil.rmtree(aside, ignore_errors=True)
                os.replace(dest, aside)
            os.replace(entry, dest)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.replace(entry, dest)
            if entry.name == VECTOR_STATE_FILE:
                _between_compaction_moves()
    fsync_dir(folder)
    os.replace(staging / MANIFEST_FILE, folder / MANIFEST_FILE)
    fsync_dir(folder)
    shutil.rmtree(staging, ignore_errors=True)
    return True


def _between_renames() -> None:
    """Called by :func:`_swap_into_place` after the old index is moved aside; tests make it crash here."""


def _swap_into_place(tmp: Path, target: Path) -> None:
    """Replace ``target`` by ``tmp``; on failure ``target`` is left (or put back) as it was."""
    backup = None
    if target.exists():
        backup = target.with_name(f"{_OLD_PREFIX.format(name=target.name)}{uuid.uuid4().hex[:8]}")
        os.replace(target, backup)
    try:
        _between_renames()
        os.replace(tmp, target)
    except BaseException:
        if backup is not None:
            os.replace(backup, target)
        raise
    fsync_dir(target.parent)
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


def _leftovers(target: Path, prefix: str) -> list[Path]:
    head = prefix.format(name=target.name)
    if not target.parent.is_dir():
        return []
    return sorted(p for p in target.parent.iterdir() if p.name.startswith(head) and p.is_dir())


def recover_interrupted_save(path: str | Path) -> bool:
    """Repair what a save killed mid-way left next to the index directory ``path``; returns True when the
    index was restored.

    When ``path`` has no manifest but one ``.NAME.old-*`` directory holds an index (the process died
    between the two renames of a save), it is moved back into place. Then leftover ``.NAME.tmp-*`` and
    ``.NAME.old-*`` directories are removed. Call it only where no other process saves to ``path``
    (``winnow serve`` does, at start). Raises :class:`IndexCorruptedError` when it cannot tell which
    directory to restore.
    """
    target = Path(path).absolute()
    restored = False
    olds = [p for p in _leftovers(target, _OLD_PREFIX) if (p / MANIFEST_FILE).is_file()]
    if olds and not (target / MANIFEST_FILE).is_file():
        if len(olds) > 1 or (target.exists() and (not target.is_dir() or any(target.iterdir()))):
            raise IndexCorruptedError(
                f"{target} holds no index, and an interrupted save left {[str(p) for p in olds]} beside it; "
                f"move the newest of them (see created_at in its {MANIFEST_FILE}) to {target} and start again"
            )
        if target.exists():
            target.rmdir()
        os.replace(olds[0], target)
        fsync_dir(target.parent)
        restored = True
        logger.warning(
            "restored the index at %s from %s, which a save killed between its two renames left behind",
            target,
            olds[0].name,
        )
    for stale in _leftovers(target, _TMP_PREFIX) + _leftovers(target, _OLD_PREFIX):
        logger.info("removing %s, left by an interrupted save", stale)
        shutil.rmtree(stale, ignore_errors=True)
    return restored


def _check_files(path: Path, manifest: IndexManifest, verify_checksums: bool) -> None:
    manifest_mtime_ns = (path / MANIFEST_FILE).stat().st_mtime_ns
    if not (path / DOCUMENTS_FILE).is_file():
        raise IndexCorruptedError(_missing(path, DOCUMENTS_FILE), file=DOCUMENTS_FILE)
    for name in HASHED_FILES:
        if name not in manifest.files or not (path / name).is_file():
            raise IndexCorruptedError(_missing(path, name), file=name)
        if verify_checksums and (problem := _file_problem(path, name, manifest, manifest_mtime_ns)):
            raise IndexCorruptedError(problem, file=name)


def _missing(path: Path, name: str) -> str:
    return f"index {path} is missing {name}; the index is incomplete, re-index the corpus"


def _file_problem(
    path: Path, name: str, manifest: IndexManifest, manifest_mtime_ns: int | None
) -> str | None:
    """What is wrong with data file ``name``, or None. Hashes it unless its size and mtime match the
    manifest's and it is older than the manifest; ``manifest_mtime_ns=None`` always hashes."""
    file = path / name
    try:
        stat = file.stat()
    except FileNotFoundError:
        return _missing(path, name)
    recorded = (manifest.file_stats or {}).get(name)
    advice = "re-index the corpus (or restore the directory from a backup)"
    if recorded is not None and stat.st_size != recorded["size"]:
        return (
            f"{file} has {stat.st_size} bytes, {MANIFEST_FILE} says {recorded['size']}: the file is "
            f"truncated, corrupted or was modified after saving; {advice}"
        )
    if recorded is not None and manifest_mtime_ns is not None:
        # a file as old as the manifest may have been rewritten within one clock tick of the save: hash it
        if stat.st_mtime_ns == recorded["mtime_ns"] and stat.st_mtime_ns < manifest_mtime_ns:
            return None
        if stat.st_mtime_ns != recorded["mtime_ns"]:
            logger.warning(
                "%s changed its modification time since the save (a copy without `cp -p`?); checking its "
                "sha256, which is slow on a big index. `winnow index --verify` tells whether it is intact",
                file,
            )
    if sha256_file(file) != manifest.files[name]:
        return (
            f"{file} does not match the sha256 in {MANIFEST_FILE}: the file is corrupted or was modified "
            f"after saving; {advice}"
        )
    return None


@dataclass(frozen=True)
class IndexVerification:
    """What :func:`verify_index` found: per file, None when intact, else what is wrong and what to do."""

    path: Path
    files: dict[str, str | None]

    @property
    def ok(self) -> bool:
        return all(problem is None for problem in self.files.values())

    @property
    def problems(self) -> dict[str, str]:
        return {name: problem for name, problem in self.files.items() if problem is not None}


def verify_index(path: str | Path) -> IndexVerification:
    """Hash every file of the index directory ``path`` against its manifest (slow: reads every byte).

    Checks files only, without loading them. An unreadable manifest is reported as a problem of
    ``manifest.json``; a directory without one raises :class:`IndexNotFoundError`.
    """
    path = Path(path)
    try:
        manifest = read_manifest(path)
    except IndexCorruptedError as exc:
        return IndexVerification(path, {MANIFEST_FILE: str(exc)})
    files: dict[str, str | None] = {DOCUMENTS_FILE: _table_problem(path)}
    for name in sorted((set(HASHED_FILES) | set(manifest.files)) - {DOCUMENTS_FILE}):
        if name not in manifest.files:
            files[name] = (
                f"{MANIFEST_FILE} of {path} lists no {name}; the index is incomplete, re-index the corpus"
            )
        else:
            files[name] = _file_problem(path, name, manifest, None)
    return IndexVerification(path, dict(sorted(files.items())))


def _table_problem(path: Path) -> str | None:
    """What SQLite's integrity check finds wrong with the live table of ``path``, or None."""
    file = path / DOCUMENTS_FILE
    if not file.is_file():
        return _missing(path, DOCUMENTS_FILE)
    try:
        with DocumentTable.load_from(file, into_memory=False, read_only=True) as table:
            problem = table.integrity_problem()
    except Exception as exc:  # noqa: BLE001 - whatever SQLite raises, the file is bad
        problem = str(exc)
    if problem is None:
        return None
    return f"{file} fails SQLite's integrity check ({problem}); restore it from a backup or re-index"


def _load_part(path: Path, name: str, loader: Callable[[Path], _T]) -> _T:
    try:
        return loader(path / name)
    except Exception as exc:  # whatever the reader raises (faiss, numpy/zip, sqlite, json), the file is bad
        raise IndexCorruptedError(f"{path / name} cannot be read: {exc}", file=name) from exc


def _check_consistency(
    path: Path, manifest: IndexManifest, vectors: VectorIndex, table: DocumentTable, *, counts: bool = True
) -> None:
    """Settings against the manifest; with ``counts`` (nothing written since the snapshot) also the counts
    and that every vector has a row."""
    problems = []
    if vectors.dim != manifest.dim:
        problems.append(f"vectors have dim {vectors.dim}, manifest says {manifest.dim}")
    if vectors.metric != manifest.metric:
        problems.append(f"vectors use metric {vectors.metric!r}, manifest says {manifest.metric!r}")
    if vectors.factory != manifest.factory:
        problems.append(f"vectors use factory {vectors.factory!r}, manifest says {manifest.factory!r}")
    if counts:
        vector_counts = {"manifest": manifest.count, "vectors": len(vectors)}
        documents = {"manifest": manifest.document_count, "table": table.count()}
        if len(set(vector_counts.values())) != 1 or len(set(documents.values())) != 1:
            problems.append(f"counts disagree: vectors {vector_counts}, documents {documents}")
        elif _vectors_without_rows(vectors, table).size:
            problems.append("some vector ids have no document row")
    if problems:
        raise IndexCorruptedError(f"index {path} is inconsistent: {'; '.join(problems)}; re-index the corpus")


def _vectors_without_rows(vectors: VectorIndex, table: DocumentTable) -> np.ndarray:
    """Vector ids that are not table keys (every vector must have a row; a row need not have a vector)."""
    return np.setdiff1d(vectors.ids(), table.all_keys(), assume_unique=True)
