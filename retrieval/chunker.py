"""Split long documents (10-K pages, reports) into overlapping windows that keep their parent id."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import replace

from winnow.retrieval.corpus import Passage

logger = logging.getLogger(__name__)

CHUNK_SEPARATOR = "#"


def window_spans(
    length: int, budget: int, stride: int, max_windows: int | None = None
) -> list[tuple[int, int]]:
    """``(start, end)`` spans of overlapping windows over a sequence of ``length`` units.

    Windows hold at most ``budget`` units and start ``stride`` units apart, so consecutive windows overlap
    by ``budget - stride``; the last window is aligned to end at the end of the sequence (so it may overlap
    its predecessor by more). A sequence of at most ``budget`` units (including an empty one) is one window.

    With ``max_windows``, a sequence that would need more windows gets exactly ``max_windows`` windows with
    evenly spread starts, the first at the beginning and the last at the end: coverage stays complete while
    the spread windows still overlap, and only beyond that do gaps appear in the middle of the document.
    """
    if budget <= 0:
        raise ValueError(f"budget must be a positive number of units, got {budget}")
    if stride <= 0 or stride > budget:
        raise ValueError(f"stride must be in [1, budget={budget}] so windows leave no gaps, got {stride}")
    if max_windows is not None and max_windows < 1:
        raise ValueError(f"max_windows must be >= 1 or None, got {max_windows}")
    if length < 0:
        raise ValueError(f"length must be >= 0, got {length}")
    if length <= budget:
        return [(0, length)]
    last_start = length - budget
    count = math.ceil(last_start / stride) + 1
    if max_windows is not None and count > max_windows:
        if max_windows == 1:
            return [(0, budget)]
        starts = [round(i * last_start / (max_windows - 1)) for i in range(max_windows)]
    else:
        starts = [*range(0, last_start, stride), last_start]
    return [(start, start + budget) for start in starts]


def chunk_id(parent_id: str, index: int) -> str:
    return f"{parent_id}{CHUNK_SEPARATOR}{index}"


def _word_chunks(text: str, size: int, overlap: int) -> list[str]:
    words = text.split()
    return [" ".join(words[start:end]) for start, end in window_spans(len(words), size, size - overlap)]


def _token_chunks(text: str, size: int, overlap: int, tokenizer: Callable) -> list[str]:
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = encoded["offset_mapping"]
    if not offsets:
        return [text]
    return [
        text[offsets[start][0] : offsets[end - 1][1]]
        for start, end in window_spans(len(offsets), size, size - overlap)
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
    if not 0 <= overlap < size:
        raise ValueError(f"overlap must be in [0, size), got overlap={overlap} for size={size}")
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
