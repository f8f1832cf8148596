"""What the REST service does, without HTTP: load once, search, rerank, write and read documents durably.

Durability: every write (``PUT``/``DELETE /documents``) is appended to a fsynced write-ahead log
(:class:`indexes.WriteLog`) before it is applied and acknowledged. The index directory is saved atomically
every ``snapshot_interval_s`` seconds when writes happened, and at shutdown, after which the log is emptied.
On start the saved index is loaded and the log replayed: a crash (even SIGKILL) loses no acknowledged write.

Consistency: a write is applied under the index's lock (:meth:`indexes.IndexWrite.apply`), so a search sees a
document either before or after a write, never half-written. Writes are serialised among themselves.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from winnow.api.settings import WinnowSettings
from winnow.indexes import DocumentRecord, IndexWrite, WinnowIndex, WriteLog, read_manifest, set_faiss_threads
from winnow.rerank.micro_batcher import BatchCallback, MicroBatcher
from winnow.rerank.search import SearchResult, TwoStageSearch
from winnow.retrieval.corpus import Passage
from winnow.retrieval.dense import DenseRetriever
from winnow.retrieval.embedder import Embedder
from winnow.retrieval.indexing import prepare_upsert
from winnow.retrieval.metadata_filter import matching_document_ids
from winnow.retrieval.records import record_to_passage

logger = logging.getLogger(__name__)


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

    # ------------------------------------------------------------------ lifecycle
    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @property
    def reranker_name(self) -> str | None:
        return None if self.engine is None else self.engine.model_name

    def load(self) -> SearchService:
        """Load models and index, replay the write log, start the batcher. Blocking; call once."""
        s = self.settings
        set_faiss_threads(s.faiss_threads)
        if s.torch_threads:
            import torch

            torch.set_num_threads(s.torch_threads)
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
        if self.engine is not None:
            self.batcher = MicroBatcher(
                self.engine,
                max_wait_ms=s.batch_wait_ms,
                max_batch_pairs=s.max_batch_pairs,
                max_queue_pairs=s.max_queue_pairs,
                enabled=s.micro_batching,
                on_batch=self._on_batch,
            ).start()
        self.searcher = TwoStageSearch(
            DenseRetriever(self.index, self.embedder),
            self.batcher,
            candidates=s.default_candidates,
            # the batcher scores for the engine; the engine's card holds the weight
            interpolation_weight=None if self.engine is None else self.engine.interpolation_weight,
        )
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
        """Stop the batcher, save the index if it changed and close the log."""
        self._ready.clear()
        if self.batcher is not None:
            self.batcher.close()
        if self.log is not None:
            try:
                self.snapshot(force=False)
            finally:
                self.log.close()

    def snapshot(self, *, force: bool = False) -> bool:
        """Save the index atomically and empty the log, when there were writes (or ``force``)."""
        if self.index is None or self.log is None:
            return False
        with self._write_lock:
            if not force and len(self.log) == 0:
                return False
            self.log.checkpoint(self.index, self.settings.index)
            self._last_snapshot = time.monotonic()
        return True

    def snapshot_due(self) -> bool:
        interval = self.settings.snapshot_interval_s
        return bool(
            interval
            and self.log is not None
            and len(self.log)
            and time.monotonic() - self._last_snapshot >= interval
        )

    # ------------------------------------------------------------------ reads
    def search(
        self,
        query: str,
        *,
        top_k: int,
        candidates: int,
        rerank: bool,
        filters: dict[str, Any] | None = None,
    ) -> SearchResult:
        """First stage (restricted by ``filters``), then reranking through the micro-batcher. Blocking."""
        assert self.searcher is not None and self.index is not None
        allow_ids = matching_document_ids(self.index, filters) if filters else None
        return self.searcher.search(
            query, top_k=top_k, candidates=candidates, rerank=rerank, allow_ids=allow_ids
        )

    async def rerank(self, query: str, documents: Sequence[str]) -> np.ndarray:
        """Raw relevance logits, one per document, scored with other requests' pairs."""
        if self.batcher is None:
            raise RuntimeError("no reranker is loaded")
        return await self.batcher.score_async(query, documents)

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
        write = prepare_upsert(self.index, passages, self.embedder)
        return self._commit(write)

    def delete(self, doc_ids: Sequence[str]) -> int:
        """Delete documents (and their chunks); returns how many existed. Chunk ids are ignored."""
        assert self.index is not None
        records = self.index.table.get(doc_ids, with_embedding=False)
        existing = [r.id for r in records if r is not None and not r.parent_id]
        if not existing:
            return 0
        return self._commit(IndexWrite(op="delete", ids=existing))

    def _commit(self, write: IndexWrite) -> int:
        assert self.index is not None and self.log is not None
        with self._write_lock:
            self.log.append(write)
            return write.apply(self.index)


def _stored(record: DocumentRecord) -> StoredDocument:
    passage = record_to_passage(record)
    return StoredDocument(id=passage.id, text=passage.text, title=passage.title, meta=passage.meta)


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
