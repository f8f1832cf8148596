"""Split long documents (10-K pages, reports) into chunks that keep their parent id and page number: word
windows (overlapping), or chunks that follow sentence or paragraph boundaries (Haystack's
``RecursiveDocumentSplitter``)."""

from __future__ import annotations

import bisect
import logging
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from winnow.retrieval.converters import PAGE_BREAK  # between a converted PDF's pages
from winnow.retrieval.corpus import Passage

logger = logging.getLogger(__name__)

CHUNK_SEPARATOR = "#"
SPLIT_BY = ("word", "sentence", "passage")
# literal separators tried in order by RecursiveDocumentSplitter (its NLTK "sentence" separator needs punkt
# data, which an offline machine lacks): a chunk packs whole sentences (or paragraphs, then sentences)
_SEPARATORS = {
    "sentence": [". ", "? ", "! ", ".\n", "\n", " "],
    "passage": [PAGE_BREAK, "\n\n", ". ", "? ", "! ", ".\n", "\n", " "],
}


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
    return [piece for piece, _ in _word_windows(text, size, overlap)]


def _word_windows(text: str, size: int, overlap: int) -> list[tuple[str, int | None]]:
    """Overlapping windows of ``size`` words, each with the 1-based page its first word is on (None when the
    text has no page breaks)."""
    words = [(m.group(), m.start()) for m in re.finditer(r"\S+", text)]
    breaks = [m.start() for m in re.finditer(PAGE_BREAK, text)]
    out = []
    for start, end in window_spans(len(words), size, size - overlap):
        page = bisect.bisect_left(breaks, words[start][1]) + 1 if breaks and words else None
        out.append((" ".join(w for w, _ in words[start:end]), page))
    return out


def _boundary_chunks(text: str, size: int, overlap: int, split_by: str) -> list[tuple[str, int | None]]:
    """Chunks of at most ``size`` words cut at sentence (or paragraph) boundaries by Haystack's
    ``RecursiveDocumentSplitter``, each with its page; a longer sentence is cut between words."""
    from haystack import Document
    from haystack.components.preprocessors import RecursiveDocumentSplitter

    splitter = RecursiveDocumentSplitter(
        split_length=size, split_overlap=overlap, split_unit="word", separators=_SEPARATORS[split_by]
    )
    splitter.warm_up()
    documents = splitter.run([Document(content=text)])["documents"]
    out: list[tuple[str, int | None]] = []
    for doc in documents:
        piece = " ".join((doc.content or "").split())  # page breaks and runs of spaces become one space
        if piece:
            out.append((piece, doc.meta.get("page_number") if PAGE_BREAK in text else None))
    return out or [(text, None)]


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
    split_by: str = "word",
) -> list[Passage]:
    """Split each passage longer than ``size`` units into chunks.

    A passage that fits stays whole and keeps its id. Chunks get ids ``<parent>#<n>``, ``parent_id`` set to
    the document id, and the parent's title and metadata (plus ``chunk`` = n, and ``page_number`` when the
    text has page breaks, as a converted PDF does), so hits can be collapsed back to documents.
    ``split_by``: ``"word"`` (windows of ``size`` words overlapping by ``overlap``), ``"sentence"`` (whole
    sentences packed up to ``size`` words) or ``"passage"`` (pages, then paragraphs, then sentences); the
    last two use Haystack's ``RecursiveDocumentSplitter``, with ``overlap`` in words.
    ``unit="tokens"`` (word windows only) needs a fast Hugging Face ``tokenizer`` (offsets are used to cut the
    original text).
    """
    if unit not in ("words", "tokens"):
        raise ValueError(f"unit must be 'words' or 'tokens', got {unit!r}")
    if split_by not in SPLIT_BY:
        raise ValueError(f"split_by must be one of {', '.join(SPLIT_BY)}, got {split_by!r}")
    if split_by != "word" and unit != "words":
        raise ValueError(f"split_by={split_by!r} counts words; use unit='words'")
    if not 0 <= overlap < size:
        raise ValueError(f"overlap must be in [0, size), got overlap={overlap} for size={size}")
    if unit == "tokens" and tokenizer is None:
        raise ValueError("unit='tokens' needs a tokenizer (the embedder's)")
    out: list[Passage] = []
    for passage in passages:
        pieces: list[tuple[str, int | None]]
        if unit == "tokens":
            pieces = [(piece, None) for piece in _token_chunks(passage.text, size, overlap, tokenizer)]
        elif split_by == "word":
            pieces = _word_windows(passage.text, size, overlap)
        elif len(passage.text.split()) <= size:
            pieces = [(passage.text, None)]
        else:
            pieces = _boundary_chunks(passage.text, size, overlap, split_by)
        if len(pieces) == 1:
            out.append(passage)
            continue
        for i, (piece, page) in enumerate(pieces):
            meta: dict[str, Any] = {**passage.meta, "chunk": i}
            if page is not None:
                meta["page_number"] = page
            out.append(
                replace(passage, id=chunk_id(passage.id, i), text=piece, parent_id=passage.id, meta=meta)
            )
    return out
