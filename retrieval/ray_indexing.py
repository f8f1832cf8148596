"""Indexing on Ray Data: a pool of actors embeds (and, for a shared store, writes) batches of passages.

Two ways to write, one per kind of store:

* :func:`build_index_ray` (a FAISS index directory): the actors only embed; the driver is the single writer,
  adding each batch's vectors in corpus order, so the index equals :func:`retrieval.indexing.build_index`'s
  (same chunking, documents, keys and vectors).
* :func:`index_documents_ray` (any Haystack ``DocumentStore``): with a ``store_factory`` every actor opens
  the store itself and writes its batches (PostgreSQL/pgvector and other shared databases); with a ``store``
  object the driver writes what the actors embedded (a store that one process owns, such as winnow's).

Either way a batch is written with ``DuplicatePolicy.OVERWRITE``, one ``write_documents`` call per batch: a
document is written whole or not at all, a batch that fails is retried (``max_attempts`` times inside its
actor, then Ray's own task retries), and a rerun overwrites instead of duplicating. Actors ask for one GPU
each when the cluster has GPUs. Connect first (:func:`retrieval.ray_cluster.ray_session`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from winnow.indexes import VectorIndex, WinnowIndex
from winnow.retrieval.corpus import Passage
from winnow.retrieval.embedder import Embedder, resolve_embedder
from winnow.retrieval.indexing import MAX_TRAINING_VECTORS, _chunk, _train, new_index
from winnow.retrieval.ray_cluster import cluster_cpus, cluster_gpus, import_ray, with_retries
from winnow.retrieval.records import passage_to_record

logger = logging.getLogger(__name__)

__all__ = [
    "EmbedderFactory",
    "build_index_ray",
    "index_documents_ray",
    "passage_document",
    "ray_workers",
]

EmbedderFactory = Callable[[], Embedder]
"""A picklable callable that builds the embedder inside an actor (instead of a model name)."""

DEFAULT_ATTEMPTS = 3


def passage_document(passage: Passage, vector: np.ndarray | None = None) -> Any:
    """The Haystack ``Document`` a passage is stored as (title and ``parent_id`` in its meta)."""
    from winnow.retrieval.document_store import record_to_document

    doc = record_to_document(passage_to_record(passage))
    if vector is not None:
        doc.embedding = np.asarray(vector, dtype=np.float32).tolist()
    return doc


def ray_workers(ray: Any, workers: int | None, gpus: bool | None = None) -> tuple[int, float]:
    """``(actors, GPUs per actor)``: one actor per GPU when the cluster has GPUs (unless ``gpus=False``),
    else one per CPU; ``workers`` caps the count."""
    n_gpus = int(cluster_gpus(ray)) if gpus is not False else 0
    if gpus and not n_gpus:
        raise ValueError("GPU actors were asked for, but the Ray cluster has no GPUs")
    available = n_gpus or max(1, int(cluster_cpus(ray)))
    count = available if workers is None else workers
    if count < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if n_gpus and count > n_gpus:
        raise ValueError(f"{count} GPU actors asked for, but the cluster has {n_gpus} GPUs")
    return count, (1.0 if n_gpus else 0.0)


class _EmbedBatch:
    """A Ray Data actor: loads the embedder once, then embeds (and optionally writes) batches of rows."""

    def __init__(
        self,
        embedder: str | EmbedderFactory | None,
        device: str | None,
        batch_size: int | None,
        store_factory: Callable[[], Any] | None,
        max_attempts: int,
    ) -> None:
        if callable(embedder):
            self.embedder = embedder()
        else:
            self.embedder = Embedder(embedder, device=device, batch_size=batch_size, show_progress=False)
        self.embedder.load()
        self.store = store_factory() if store_factory is not None else None
        self.max_attempts = max_attempts

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = np.asarray(batch["row"], dtype=np.int64)
        texts = [str(t) for t in batch["text"]]
        where = f"rows {int(rows.min())}-{int(rows.max())}" if len(rows) else "an empty batch"

        def attempt() -> dict[str, np.ndarray]:
            vectors = self.embedder.embed_documents(texts, show_progress=False)
            if self.store is None:
                return {"row": rows, "vector": vectors}
            self._write(batch, vectors)
            return {"row": rows, "written": np.ones(len(rows), dtype=np.int8)}

        return with_retries(attempt, f"indexing batch ({where})", self.max_attempts)

    def _write(self, batch: dict[str, np.ndarray], vectors: np.ndarray) -> None:
        import json

        from haystack.document_stores.types import DuplicatePolicy

        docs = []
        for i, doc_id in enumerate(batch["id"]):
            passage = Passage(
                id=str(doc_id),
                text=str(batch["body"][i]),
                title=str(batch["title"][i]),
                meta=json.loads(str(batch["meta"][i])),
                parent_id=str(batch["parent_id"][i]) or None,
            )
            docs.append(passage_document(passage, vectors[i]))
        self.store.write_documents(docs, policy=DuplicatePolicy.OVERWRITE)  # one call: whole or nothing


@contextlib.contextmanager
def _quiet_data_context(ray: Any, preserve_order: bool) -> Iterator[None]:
    """Ray Data without its own progress bars (winnow shows one tqdm bar), optionally order-preserving."""
    ctx = ray.data.DataContext.get_current()
    saved = (ctx.enable_progress_bars, ctx.execution_options.preserve_order)
    ctx.enable_progress_bars = False
    ctx.execution_options.preserve_order = preserve_order
    try:
        yield
    finally:
        ctx.enable_progress_bars, ctx.execution_options.preserve_order = saved


def _run(
    passages: Sequence[Passage],
    *,
    embedder: str | EmbedderFactory | None,
    device: str | None,
    batch_size: int | None,
    block_size: int,
    workers: int | None,
    gpus: bool | None,
    store_factory: Callable[[], Any] | None,
    max_attempts: int,
    show_progress: bool,
    desc: str,
) -> Iterator[dict[str, np.ndarray]]:
    """Run the actor pool over ``passages``; yield its output batches as they finish (with a progress bar)."""
    import json

    ray = import_ray()
    if not ray.is_initialized():
        raise RuntimeError("connect to Ray first: with ray_session(address): ...")
    if block_size < 1 or max_attempts < 1:
        raise ValueError("block_size and max_attempts must be at least 1")
    n_actors, gpu_each = ray_workers(ray, workers, gpus)
    rows: list[dict[str, Any]] = []
    for i, p in enumerate(passages):
        row: dict[str, Any] = {"row": i, "text": p.full_text()}
        if store_factory is not None:  # the actors build the documents they write
            row.update(
                id=p.id, body=p.text, title=p.title, meta=json.dumps(p.meta), parent_id=p.parent_id or ""
            )
        rows.append(row)
    blocks = max(1, min(len(rows) // block_size + 1, 4 * n_actors * 8))
    if device is None and gpu_each:
        device = "cuda"
    logger.info("embedding %d passages with %d Ray actors (%g GPU each)", len(rows), n_actors, gpu_each)
    with _quiet_data_context(ray, preserve_order=store_factory is None):
        # at most 2 batches queued per actor: the first actor to start does not take the whole corpus
        ds = ray.data.from_items(rows, override_num_blocks=blocks).map_batches(
            _EmbedBatch,
            fn_constructor_kwargs={
                "embedder": embedder,
                "device": device,
                "batch_size": batch_size,
                "store_factory": store_factory,
                "max_attempts": max_attempts,
            },
            batch_size=block_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=n_actors, max_tasks_in_flight_per_actor=2),
            num_gpus=gpu_each,
            num_cpus=0 if gpu_each else 1,
        )
        with tqdm(total=len(rows), desc=desc, unit="passage", disable=not show_progress) as bar:
            for out in ds.iter_batches(batch_size=None, batch_format="numpy"):
                bar.update(len(out["row"]))
                yield out


def _prepare(
    passages: Sequence[Passage], chunk_words: int | None, chunk_overlap: int | None, split_by: str
) -> tuple[list[Passage], list[Passage], int | None]:
    """(passages to embed, whole documents stored without a vector, overlap): as ``build_index`` chunks."""
    if not passages:
        raise ValueError("no passages to index")
    if chunk_words is not None and chunk_words <= 0:
        raise ValueError(f"chunk_words must be positive, got {chunk_words}")
    if not chunk_words:
        return list(passages), [], None
    default_overlap = chunk_words // 5 if split_by == "word" else 0
    overlap = chunk_overlap if chunk_overlap is not None else default_overlap
    pieces, parents = _chunk(passages, chunk_words, overlap, split_by)
    return pieces, parents, overlap


def build_index_ray(
    passages: Sequence[Passage],
    *,
    embedder: str | EmbedderFactory | None = None,
    factory: str = "Flat",
    chunk_words: int | None = None,
    chunk_overlap: int | None = None,
    split_by: str = "word",
    device: str | None = None,
    batch_size: int | None = None,
    block_size: int = 1024,
    workers: int | None = None,
    gpus: bool | None = None,
    max_attempts: int = DEFAULT_ATTEMPTS,
    show_progress: bool = True,
) -> WinnowIndex:
    """:func:`retrieval.indexing.build_index` with the embedding done by a pool of Ray actors.

    The driver adds the vectors in corpus order as batches come back, so the index holds the same documents,
    keys and vectors as the single-process build (chunking options as there). ``workers`` (default: one per
    GPU, else one per CPU) and ``gpus`` (default: when the cluster has them) size the pool; ``embedder`` is a
    model name/folder or a picklable factory.
    """
    pieces, parents, overlap = _prepare(passages, chunk_words, chunk_overlap, split_by)
    chunked = any(p.parent_id for p in pieces)
    name = embedder().name if callable(embedder) else resolve_embedder(embedder)[0]
    index: WinnowIndex | None = None
    vectors_index: VectorIndex | None = None
    pending_train = False
    buffered: list[tuple[list[Passage], np.ndarray]] = []
    waiting: dict[int, np.ndarray] = {}
    next_row = 0

    def add(block: list[Passage], vectors: np.ndarray) -> None:
        nonlocal pending_train
        assert index is not None and vectors_index is not None
        if pending_train:
            buffered.append((block, vectors))
            done = next_row >= len(pieces)
            if sum(len(b) for b, _ in buffered) >= MAX_TRAINING_VECTORS or done:
                _train(vectors_index, np.concatenate([v for _, v in buffered]))
                pending_train = False
                for b, v in buffered:
                    index.add_records([passage_to_record(p) for p in b], v)
                buffered.clear()
            return
        index.add_records([passage_to_record(p) for p in block], vectors)

    for out in _run(
        pieces,
        embedder=embedder,
        device=device,
        batch_size=batch_size,
        block_size=block_size,
        workers=workers,
        gpus=gpus,
        store_factory=None,
        max_attempts=max_attempts,
        show_progress=show_progress,
        desc="embedding (ray)",
    ):
        vectors = np.asarray(out["vector"], dtype=np.float32)
        if index is None:
            vectors_index = VectorIndex(vectors.shape[1], factory=factory)
            pending_train = vectors_index.needs_training
            index = new_index(
                vectors_index,
                name,
                parents,
                chunked=chunked,
                chunk_words=chunk_words,
                chunk_overlap=overlap,
                split_by=split_by,
            )
        for row, vector in zip(out["row"].tolist(), vectors, strict=True):
            waiting[row] = vector
        start = next_row
        while next_row in waiting:
            next_row += 1
        if next_row > start:
            add(list(pieces[start:next_row]), np.stack([waiting.pop(r) for r in range(start, next_row)]))
    if index is None or next_row != len(pieces):
        raise RuntimeError(f"Ray returned vectors for {next_row} of {len(pieces)} passages")
    return index


def index_documents_ray(
    passages: Sequence[Passage],
    *,
    store: Any = None,
    store_factory: Callable[[], Any] | None = None,
    embedder: str | EmbedderFactory | None = None,
    chunk_words: int | None = None,
    chunk_overlap: int | None = None,
    split_by: str = "word",
    device: str | None = None,
    batch_size: int | None = None,
    block_size: int = 256,
    workers: int | None = None,
    gpus: bool | None = None,
    max_attempts: int = DEFAULT_ATTEMPTS,
    show_progress: bool = True,
) -> int:
    """Embed ``passages`` on Ray actors into a Haystack ``DocumentStore``; returns the documents written.

    Give exactly one of ``store_factory`` (a picklable callable that opens the same shared store in each
    actor, which then writes its own batches) or ``store`` (the driver writes: for a store one process owns).
    Chunked documents are also stored whole, without an embedding, as :func:`build_index` does.
    """
    from haystack.document_stores.types import DuplicatePolicy

    if (store is None) == (store_factory is None):
        raise ValueError("pass exactly one of store (the driver writes) or store_factory (the actors write)")
    pieces, parents, _ = _prepare(passages, chunk_words, chunk_overlap, split_by)
    writer = store if store is not None else store_factory()  # type: ignore[misc]
    if parents:  # whole documents without vectors: small, written by the driver
        docs = [passage_document(p) for p in parents]
        with_retries(
            lambda: writer.write_documents(docs, policy=DuplicatePolicy.OVERWRITE),
            f"writing {len(docs)} whole documents",
            max_attempts,
        )
    written = 0
    for out in _run(
        pieces,
        embedder=embedder,
        device=device,
        batch_size=batch_size,
        block_size=block_size,
        workers=workers,
        gpus=gpus,
        store_factory=store_factory,
        max_attempts=max_attempts,
        show_progress=show_progress,
        desc="indexing (ray)",
    ):
        if store is not None:
            docs = [
                passage_document(pieces[row], vector)
                for row, vector in zip(out["row"].tolist(), out["vector"], strict=True)
            ]
            with_retries(
                lambda docs=docs: writer.write_documents(docs, policy=DuplicatePolicy.OVERWRITE),
                f"writing {len(docs)} documents",
                max_attempts,
            )
        written += len(out["row"])
    if written != len(pieces):
        raise RuntimeError(f"Ray wrote {written} of {len(pieces)} passages")
    return written + len(parents)
