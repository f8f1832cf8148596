"""Split long documents (10-K pages, reports) into overlapping windows that keep their parent id."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import replace

from retrieval.corpus import Passage

logger = logging.getLogger(__name__)

CHUNK_SEPARATOR = "#"


def window_spans(n_units: int, size: int, overlap: int) -> list[tuple[int, int]]:
    """``[start, end)`` spans of at most ``size`` units, consecutive spans sharing ``overlap`` units."""
    if size <= 0:
        raise ValueError(f"chunk size must be positive, got {size}")
    if not 0 <= overlap < size:
        raise ValueError(f"overlap must be in [0, size), got overlap={overlap} for size={size}")
    if n_units <= size:
        return [(0, n_units)]
    step = size - overlap
    spans = []
    start = 0
    while True:
        end = min(start + size, n_units)
        spans.append((start, end))
        if end == n_units:
            return spans
        start += step


def chunk_id(parent_id: str, index: int) -> str:
    return f"{parent_id}{CHUNK_SEPARATOR}{index}"


def _word_chunks(text: str, size: int, overlap: int) -> list[str]:
    words = text.split()
    return [" ".join(words[start:end]) for start, end in window_spans(len(words), size, overlap)]


def _token_chunks(text: str, size: int, overlap: int, tokenizer: Callable) -> list[str]:
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = encoded["offset_mapping"]
    if not offsets:
        return [text]
    return [
        text[offsets[start][0] : offsets[end - 1][1]]
        for start, end in window_spans(len(offsets), size, overlap)
    ]


def chunk_passages(
    passages: Iterable[Passage],
    *,
    size: int = 200,
    overlap: int = 40,
    unit: str = "words",
    tokenizer: Callable | None = None,
) -> list[Passage]:
    """Split each passage longer than ``size`` units into overlapping chunks.

    A passage that fits stays whole and keeps its id. Chunks get ids ``<parent>#<n>``, ``parent_id`` set to
    the document id, and the parent's title and metadata (plus ``chunk`` = n), so hits can be collapsed back
    to documents.
    ``unit="tokens"`` needs a fast Hugging Face ``tokenizer`` (offsets are used to cut the original text).
    """
    if unit not in ("words", "tokens"):
        raise ValueError(f"unit must be 'words' or 'tokens', got {unit!r}")
    if unit == "tokens" and tokenizer is None:
        raise ValueError("unit='tokens' needs a tokenizer (the embedder's)")
    out: list[Passage] = []
    for passage in passages:
        if unit == "words":
            pieces = _word_chunks(passage.text, size, overlap)
        else:
            pieces = _token_chunks(passage.text, size, overlap, tokenizer)
        if len(pieces) == 1:
            out.append(passage)
            continue
        for i, piece in enumerate(pieces):
            out.append(
                replace(
                    passage,
                    id=chunk_id(passage.id, i),
                    text=piece,
                    parent_id=passage.id,
                    meta={**passage.meta, "chunk": i},
                )
            )
    return out
