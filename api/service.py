"""What the REST service does, without HTTP: load once, search, rerank, write and read documents durably.

Durability: every write (``PUT``/``DELETE /documents``) is appended to a fsynced write-ahead log
(:class:`indexes.WriteLog`) before it is applied and acknowledged; applying it writes the index directory in
place (one SQLite transaction, on disk before the write is acknowledged; see :mod:`indexes.index_dir`). Every
``snapshot_interval_s`` seconds when writes happened, and at shutdown, the log is emptied (an index that is
not in its directory yet, e.g. the empty one started without an index, is saved there first); the index is
compacted then only when enough vectors changed (:meth:`SearchService.snapshot` with ``force=True`` always
compacts). On start the index is opened and the log replayed: a crash (even SIGKILL) loses no acknowledged
write, and a save killed mid-swap is repaired first. A write that failed is never replayed: a full disk
answers 507, an fsync error 503 (writes refused until a restart); a failed save is retried after a doubling
back-off.

Consistency: a write is applied under the index's lock (:meth:`indexes.IndexWrite.apply`), so a search sees a
document either before or after a write, never half-written. Writes are serialised among themselves. The
BM25 retriever (for ``bm25`` and ``hybrid`` first stages) is marked stale by every committed write and rebuilt
by the next search that needs it, so a search after an acknowledged write sees it on every first stage.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from winnow.api.settings import WinnowSettings
from winnow.indexes import (
    DocumentRecord,
    IndexWrite,
    WinnowIndex,
    WriteLog,
    WriteLogUnavailableError,
    read_manifest,
    recover_interrupted_save,
    set_faiss_threads,
)
from winnow.rerank.micro_batcher import BatchCallback, MicroBatcher
from winnow.rerank.search import FirstStage, SearchResult, TwoStageSearch
from winnow.retrieval.corpus import Passage
from winnow.retrieval.embedder import Embedder
from winnow.retrieval.first_stage import FIRST_STAGES, bm25_from_index, make_first_stage
from winnow.retrieval.hit import Hit
from winnow.retrieval.indexing import prepare_upsert
from winnow.retrieval.metadata_filter import matching_document_ids
from winnow.retrieval.records import record_to_passage

logger = logging.getLogger(__name__)

SNAPSHOT_RETRY_MAX_S = 600.0  # failed scheduled saves are retried after 2x, 4x, ... the interval, up to this


@dataclass
class StoredDocument:
    id: str
    text: str
    title: str
    meta: dict[str, Any]


class SearchService:
    """The index, the embedder, the reranker and the micro-batcher of one ``winnow serve`` process."""

    def __init__(self, settings: WinnowSettings, *, on_batch: BatchCallback | None = None) -> None:
        self.settings = settings
        self._on_batch = on_batch
        self.index: WinnowIndex | None = None
        self.embedder: Embedder | None = None
        self.engine: Any = None
        self.batcher: MicroBatcher | None = None
        self.searcher: TwoStageSearch | None = None
        self.log: WriteLog | None = None
        self._write_lock = threading.Lock()
        self._ready = threading.Event()
        self._last_snapshot = time.monotonic()
        self._snapshot_failures = 0  # consecutive failed saves, for the retry back-off
        self._next_snapshot_try = 0.0
        self._diverged: str | None = None  # set when memory may differ from saved index + log
        self._bm25_lock = threading.Lock()  # guards the three below
        self._bm25_stale = True  # a write was committed since the BM25 retriever was built
        self._lexical_searchers: dict[str, TwoStageSearch] = {}  # "bm25" and "hybrid", over one BM25

    # ------------------------------------------------------------------ lifecycle
    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @property
    def reranker_name(self) -> str | None:
        """The reranker's display name (never a filesystem path), or None without one."""
        return None if self.engine is None else display_name(self.engine.model_name)

    @property
    def embedder_name(self) -> str | None:
        """The bi-encoder's display name (never a filesystem path)."""
        return None if self.embedder is None else display_name(self.embedder.name)

    def load(self) -> SearchService:
        """Load models and index, replay the write log, start the batcher. Blocking; call once."""
        s = self.settings
        set_faiss_threads(s.faiss_threads)
        if s.torch_threads:
            import torch

            torch.set_num_threads(s.torch_threads)
        recover_interrupted_save(s.index)  # a save killed between its renames, leftover temp folders
        index_exists = (s.index / "manifest.json").is_file()
        embedder_name = s.embedder or (read_manifest(s.index).embedder if index_exists else None)
        self.embedder = Embedder(embedder_name, device=s.device, show_progress=False).load()
        if index_exists:
            self.index = WinnowIndex.load(s.index, expected_embedder=self.embedder.name)
        else:
            logger.info(
                "no index at %s: starting an empty one (%s); it is saved on the first write",
                s.index,
                s.factory,
            )
            self.index = WinnowIndex.create(self.embedder.dim, embedder=self.embedder.name, factory=s.factory)
        assert s.write_log is not None
        self.log = WriteLog(s.write_log)
        self.log.replay(self.index)
        self.engine = _load_reranker(s)
        self.batcher = _start_batcher(s, self.engine, self._on_batch)
        self.searcher = self._two_stage(make_first_stage("dense", self.index, self.embedder))
        self._ready.set()
        logger.info(
            "serving %d documents (%d vectors) with %s%s",
            self.index.table.count(),
            len(self.index),
            self.embedder.name,
            f" and reranker {self.engine.model_name}" if self.engine is not None else ", no reranker",
        )
        return self

    def close(self) -> None:
        """Stop the batcher, save the index if it changed and close the log. A failed save is logged, not
        raised: the log still holds every acknowledged write and the next start replays it."""
        self._ready.clear()
        if self.batcher is not None:
            self.batcher.close()
        if self.log is not None:
            try:
                if self._diverged is None:
                    self.snapshot(force=False)
                else:
                    logger.warning("not saving the index at shutdown: %s", self._diverged)
            except Exception:  # noqa: BLE001 - nothing acknowledged is lost: the log is replayed at start
                logger.exception("saving the index at shutdown failed; the write log keeps every write")
            finally:
                self.log.close()

    def snapshot(self, *, force: bool = False) -> bool:
        """Make the index durable in its directory and empty the log, when there were writes (or ``force``,
        which also compacts the index, writing its vector snapshot and BM25).

        A failure (a full disk raises :class:`indexes.StorageFullError`) postpones the next scheduled try
        (:meth:`snapshot_due`) by a doubling back-off, capped at ``SNAPSHOT_RETRY_MAX_S``.
        """
        if self.index is None or self.log is None:
            return False
        with self._write_lock:
            if self._diverged is not None:
                raise WriteLogUnavailableError(self._diverged)
            if not force and len(self.log) == 0:
                return False
            try:
                self.log.checkpoint(self.index, self.settings.index, compact=force)
            except BaseException:
                self._snapshot_failures += 1
                self._next_snapshot_try = time.monotonic() + self.snapshot_retry_s()
                raise
            self._snapshot_failures = 0
            self._next_snapshot_try = 0.0
            self._last_snapshot = time.monotonic()
        return True

    def snapshot_retry_s(self) -> float:
        """Seconds to wait before retrying a save after the failures so far (0 when the last one worked)."""
        if not self._snapshot_failures:
            return 0.0
        base = max(float(self.settings.snapshot_interval_s or 0.0), 5.0)
        return min(base * 2 ** (self._snapshot_failures - 1), SNAPSHOT_RETRY_MAX_S)

    def snapshot_due(self) -> bool:
        interval = self.settings.snapshot_interval_s
        now = time.monotonic()
        return bool(
            interval
            and self.log is not None
            and self._diverged is None
            and len(self.log)
            and now - self._last_snapshot >= interval
            and now >= self._next_snapshot_try
        )

    def _two_stage(self, retriever: Any) -> TwoStageSearch:
        return TwoStageSearch(
            retriever,
            self.batcher,
            candidates=self.settings.default_candidates,
            # the batcher scores for the engine; the engine's card holds the weight
            interpolation_weight=None if self.engine is None else self.engine.interpolation_weight,
        )

    # ------------------------------------------------------------------ reads
    def default_first_stage(self) -> str:
        """``hybrid`` when the index's document table holds documents (BM25 has something to index), else
        ``dense``."""
        assert self.index is not None
        return "hybrid" if self.index.table.count() else "dense"

    def _searcher(self, kind: str) -> TwoStageSearch:
        """The two-stage search over the ``kind`` first stage, built as the CLI builds it
        (:func:`retrieval.first_stage.make_first_stage`: same RRF k and fusion depth)."""
        assert self.searcher is not None and self.index is not None
        if kind not in FIRST_STAGES:
            raise ValueError(f"unknown first stage {kind!r}; choose one of {', '.join(FIRST_STAGES)}")
        if kind == "dense":
            return self.searcher
        with self._bm25_lock:
            if self._bm25_stale:
                self._rebuild_bm25()
            return self._lexical_searchers.get(kind) or self._two_stage(_NoHits(kind))

    def _rebuild_bm25(self) -> None:
        """Rebuild BM25 from the index's document table (caller holds ``_bm25_lock``).

        Before any write, the BM25 saved with the index is loaded (:mod:`retrieval.bm25_index`); after one
        or more writes the first bm25/hybrid search rebuilds it, O(corpus) (bm25s has no incremental update),
        and the next snapshot saves it with the index. The flag is cleared before the table is read, so a
        write committed during the rebuild marks it stale again and the next search rebuilds.
        """
        assert self.index is not None
        self._bm25_stale = False
        self._lexical_searchers = {}
        if not self.index.table.count():
            return
        bm25 = bm25_from_index(self.index)
        self._lexical_searchers = {
            kind: self._two_stage(make_first_stage(kind, self.index, self.embedder, bm25=bm25))
            for kind in ("bm25", "hybrid")
        }

    def search(
        self,
        query: str,
        *,
        top_k: int,
        candidates: int,
        rerank: bool,
        filters: dict[str, Any] | None = None,
        first_stage: str | None = None,
    ) -> SearchResult:
        """First stage (restricted by ``filters``), then reranking through the micro-batcher. Blocking: the
        REST route runs :meth:`first_stage` in a thread and awaits the reranker on its event loop instead."""
        assert self.searcher is not None
        stage = self.first_stage(
            query, top_k=top_k, candidates=candidates, rerank=rerank, filters=filters, first_stage=first_stage
        )
        if stage.rerank and stage.hits and self.batcher is not None:
            scored = self.batcher.score_with_readings(query, stage.texts)
            return self.searcher.finish(stage, scored.scores, scored.readings)
        return self.searcher.finish(stage, None)

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
        """The first stage of :meth:`search` (``dense``, ``bm25`` or ``hybrid``; None:
        :meth:`default_first_stage`), restricted by ``filters`` on every kind; rerank ``.texts`` when
        ``.rerank``, then ``searcher.finish``. Blocking."""
        assert self.searcher is not None and self.index is not None
        searcher = self._searcher(first_stage or self.default_first_stage())
        allow_ids = (
            matching_document_ids(self.index, filters, max_seconds=self.settings.max_filter_seconds)
            if filters
            else None
        )
        return searcher.retrieve(
            query, top_k=top_k, candidates=candidates, rerank=rerank, allow_ids=allow_ids
        )

    async def rerank(
        self, query: str, documents: Sequence[str], *, timeout: float | None = None
    ) -> np.ndarray:
        """Raw relevance logits, one per document, scored with other requests' pairs. Cancelling the awaiting
        task (or ``timeout``: ``TimeoutError``) cancels the queued work."""
        if self.batcher is None:
            raise RuntimeError("no reranker is loaded")
        return await self.batcher.score_async(query, documents, timeout=timeout)

    def get(self, doc_id: str) -> StoredDocument | None:
        assert self.index is not None
        record = self.index.table.get([doc_id], with_embedding=False)[0]
        if record is None or record.parent_id:
            return None
        return _stored(record)

    def count(self) -> tuple[int, int]:
        """(documents, searchable vectors)."""
        assert self.index is not None
        return self.index.table.count(), len(self.index)

    # ------------------------------------------------------------------ writes
    def upsert(self, passages: Sequence[Passage]) -> int:
        """Embed, log durably, then apply: when this returns, the documents survive a crash. Blocking."""
        assert self.index is not None and self.embedder is not None
        self._check_writable()
        write = prepare_upsert(self.index, passages, self.embedder)
        return self._commit(write)

    def delete(self, doc_ids: Sequence[str]) -> int:
        """Delete documents (and their chunks); returns how many existed. Chunk ids are ignored."""
        assert self.index is not None
        self._check_writable()
        records = self.index.table.get(doc_ids, with_embedding=False)
        existing = [r.id for r in records if r is not None and not r.parent_id]
        if not existing:
            return 0
        return self._commit(IndexWrite(op="delete", ids=existing))

    def _check_writable(self) -> None:
        """Raise :class:`indexes.WriteLogUnavailableError` (a 503) once writes are refused until restart."""
        reason = self._diverged or (self.log.failure if self.log is not None else None)
        if reason is not None:
            raise WriteLogUnavailableError(reason)

    def _commit(self, write: IndexWrite) -> int:
        """Check, log, apply. Acknowledged writes are exactly what a restart replays: a write that cannot
        apply is refused before logging; one that fails to apply anyway is cut from the log, and since
        memory may then hold part of it, writes and saves are refused until a restart reloads from disk."""
        assert self.index is not None and self.log is not None
        with self._write_lock:
            self._check_writable()
            write.check(self.index)
            self.log.append(write)
            try:
                with self.index.lock, self.index.table.transaction():  # a failed apply leaves no row behind
                    return write.apply(self.index)
            except BaseException as exc:
                self._diverged = (
                    f"applying a logged write failed ({type(exc).__name__}: {exc}); it was not saved, but "
                    f"the in-memory index may hold part of it, so writes are refused until winnow restarts "
                    f"(a restart reloads the saved index and the write log). Restart the server"
                )
                logger.error("%s", self._diverged)
                try:
                    self.log.retract()
                finally:
                    self.log.disable(self._diverged)
                raise
            finally:
                self._bm25_stale = True  # the next bm25/hybrid search rebuilds and sees this write


class _NoHits:
    """A first stage with nothing to search (BM25 over an empty document table)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def retrieve_batch(
        self, queries: Sequence[str], top_k: int = 10, *, allow_ids: Sequence[str] | None = None
    ) -> list[list[Hit]]:
        return [[] for _ in queries]


def display_name(name: str) -> str:
    """A model's name as responses show it: a short or hub name (``org/name``) as is, a local folder by its
    own name only, so responses never reveal the server's directory layout."""
    text = str(name).strip()
    path = Path(text).expanduser()
    looks_like_path = (
        text.startswith(("/", "./", "../", "~", "."))
        or "\\" in text
        or path.is_absolute()
        or text.count("/") > 1
        or ("/" in text and path.exists())
    )
    if not looks_like_path:
        return text
    last = text.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    if last in ("", ".", "..", "~"):
        last = path.resolve().name
    return last or "model"


def _stored(record: DocumentRecord) -> StoredDocument:
    passage = record_to_passage(record)
    return StoredDocument(id=passage.id, text=passage.text, title=passage.title, meta=passage.meta)


def _start_batcher(
    settings: WinnowSettings, engine: Any, on_batch: BatchCallback | None
) -> MicroBatcher | None:
    """The started micro-batcher that scores for ``engine`` under the settings' limits, or None."""
    if engine is None:
        return None
    return MicroBatcher(
        engine,
        max_wait_ms=settings.batch_wait_ms,
        max_batch_pairs=settings.max_batch_pairs,
        max_queue_pairs=settings.max_queue_pairs,
        latency_budget_ms=settings.latency_budget_ms or None,
        enabled=settings.micro_batching,
        on_batch=on_batch,
    ).start()


def _load_reranker(settings: WinnowSettings):
    """The cross-encoder engine, or None: no reranker configured, or the default one is not shipped."""
    from winnow.rerank.engine import CrossEncoderEngine
    from winnow.rerank.models import DEFAULT_RERANKER, shipped_models

    name = settings.reranker
    if name is None:
        return None
    if name == DEFAULT_RERANKER and name not in shipped_models():
        logger.warning(
            "winnow's default reranker %r is not installed; serving the first stage only "
            "(pass --reranker PATH to rerank)",
            name,
        )
        return None
    return CrossEncoderEngine(
        name, device=settings.device, backend=settings.backend, windows=settings.windows, show_progress=False
    ).load()
