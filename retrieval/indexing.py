"""Build a ``WinnowIndex`` from passages: chunk, embed in blocks, train when the index type needs it, add."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from tqdm.auto import tqdm

from winnow.indexes import IndexWrite, VectorIndex, WinnowIndex, upsert_write
from winnow.retrieval.chunker import chunk_passages
from winnow.retrieval.corpus import Passage
from winnow.retrieval.embedder import Embedder
from winnow.retrieval.records import passage_to_record

logger = logging.getLogger(__name__)

MAX_TRAINING_VECTORS = 200_000


def new_index(
    vectors: VectorIndex,
    embedder: str,
    parents: Sequence[Passage],
    *,
    chunked: bool,
    chunk_words: int | None,
    chunk_overlap: int | None,
    split_by: str,
) -> WinnowIndex:
    """An empty index over ``vectors`` that records how its passages were chunked, holding the whole
    ``parents`` documents (without vectors) of a chunked corpus."""
    index = WinnowIndex(
        vectors=vectors,
        embedder=embedder,
        extra={
            "chunked": chunked,
            "chunk_words": chunk_words if chunked else None,
            "chunk_overlap": chunk_overlap if chunked else None,
            "split_by": split_by if chunked else None,
        },
    )
    if parents:
        index.add_records([passage_to_record(p) for p in parents])  # whole documents, no vectors
    return index


def build_index(
    passages: Sequence[Passage],
    embedder: Embedder,
    *,
    factory: str = "Flat",
    chunk_words: int | None = None,
    chunk_overlap: int | None = None,
    block_size: int = 1024,
    show_progress: bool = True,
    split_by: str = "word",
) -> WinnowIndex:
    """Chunk (when ``chunk_words`` is set), embed title + text, and index every passage.

    ``split_by`` (see :func:`retrieval.chunker.chunk_passages`): ``"word"`` windows of ``chunk_words``
    overlapping by ``chunk_overlap`` (default a fifth), or ``"sentence"``/``"passage"`` chunks of at most
    ``chunk_words`` words cut at sentence/paragraph boundaries (overlap default 0).

    A chunked document is stored whole as a row without a vector (so results can carry the full page to a
    reranker and BM25 can index documents) and as its chunks, each with a vector. Index types that need
    training (IVF, PQ) are trained on up to 200k embedded passages first.
    """
    if not passages:
        raise ValueError("no passages to index")
    if chunk_words is not None and chunk_words <= 0:
        raise ValueError(f"chunk_words must be positive, got {chunk_words}")
    chunked = False
    overlap = None
    parents: list[Passage] = []
    if chunk_words:
        default_overlap = chunk_words // 5 if split_by == "word" else 0
        overlap = chunk_overlap if chunk_overlap is not None else default_overlap
        before = len(passages)
        passages, parents = _chunk(passages, chunk_words, overlap, split_by)
        chunked = any(p.parent_id for p in passages)
        logger.info(
            "chunked %d documents into %d passages (%d words, overlap %d)",
            before,
            len(passages),
            chunk_words,
            overlap,
        )
    vectors_index = VectorIndex(embedder.dim, factory=factory)
    index = new_index(
        vectors_index,
        embedder.name,
        parents,
        chunked=chunked,
        chunk_words=chunk_words,
        chunk_overlap=overlap,
        split_by=split_by,
    )
    texts = [p.full_text() for p in passages]
    pending_train = vectors_index.needs_training
    buffered: list[tuple[list[Passage], np.ndarray]] = []
    with tqdm(total=len(passages), desc="embedding", unit="passage", disable=not show_progress) as bar:
        for start in range(0, len(passages), block_size):
            block = list(passages[start : start + block_size])
            vectors = embedder.embed_documents(texts[start : start + block_size], show_progress=False)
            bar.update(len(block))
            if pending_train:
                buffered.append((block, vectors))
                if sum(len(b) for b, _ in buffered) >= MAX_TRAINING_VECTORS or start + block_size >= len(
                    passages
                ):
                    _train(vectors_index, np.concatenate([v for _, v in buffered]))
                    pending_train = False
                    for b, v in buffered:
                        index.add_records([passage_to_record(p) for p in b], v)
                    buffered.clear()
                continue
            index.add_records([passage_to_record(p) for p in block], vectors)
    return index


def _chunk(
    documents: Sequence[Passage], size: int, overlap: int, split_by: str = "word"
) -> tuple[list[Passage], list[Passage]]:
    """(the passages to embed: chunks and documents short enough to stay whole, the documents that were
    split: stored whole without a vector)."""
    pieces = chunk_passages(documents, size=size, overlap=overlap, split_by=split_by)
    split = {p.parent_id for p in pieces if p.parent_id}
    return pieces, [d for d in documents if d.id in split]


def _train(vectors_index: VectorIndex, vectors: np.ndarray) -> None:
    logger.info("training %s on %d vectors", vectors_index.factory, len(vectors))
    vectors_index.train(vectors[:MAX_TRAINING_VECTORS])


def prepare_upsert(index: WinnowIndex, passages: Sequence[Passage], embedder: Embedder) -> IndexWrite:
    """Embed ``passages`` the way ``index`` was built (same chunking) into an :class:`IndexWrite` that
    replaces those documents and their chunks; apply it with ``write.apply(index)`` (after logging it)."""
    if not passages:
        raise ValueError("no passages to write")
    if embedder.name != index.embedder:
        raise ValueError(f"embedder {embedder.name!r} differs from the index's {index.embedder!r}")
    ids = [p.id for p in passages]
    pieces, parents = list(passages), []
    chunk_words = index.extra.get("chunk_words") if index.extra.get("chunked") else None
    if chunk_words:
        pieces, parents = _chunk(
            passages,
            int(chunk_words),
            int(index.extra.get("chunk_overlap") or 0),
            str(index.extra.get("split_by") or "word"),
        )
    vectors = embedder.embed_documents([p.full_text() for p in pieces], show_progress=False)
    records = [passage_to_record(p) for p in parents] + [passage_to_record(p) for p in pieces]
    has_vector = [False] * len(parents) + [True] * len(pieces)
    return upsert_write(ids, records, vectors, has_vector)
