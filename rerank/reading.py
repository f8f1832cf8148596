"""How the cross-encoder read each document: whole, truncated at N tokens, or by its best of K windows.

A cross-encoder sees at most ``max_length`` tokens per (query, document) pair. A longer document is either
cut (``truncated``) or split into overlapping windows scored on their own, the document taking its best
window's score (``windows``). Silently dropping text is the most reported complaint about rerankers, so the
engine returns a :class:`Reading` with every score it can (:meth:`CrossEncoderEngine.score_with_readings`),
computed from the token counts it has anyway, and every interface passes it on:

- REST: ``reading`` on each ``/v2/rerank`` result, ``/rerank`` item and ``/search`` hit;
- Haystack: ``meta["rerank_reading"]`` of each document ``WinnowRanker`` returns;
- CLI: ``reading`` on each result of ``winnow search --reranker M --json``.

Example (:meth:`Reading.to_dict`)::

    {"read": "windows", "tokens": 120, "document_tokens": 900, "windows": 9, "best_window": 4,
     "complete": true, "query_tokens": 7, "query_truncated": false}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, NamedTuple

import numpy as np

__all__ = ["READ_KINDS", "Reading", "Scored", "reading_of"]

ReadKind = Literal["whole", "truncated", "windows"]
READ_KINDS: tuple[str, ...] = ("whole", "truncated", "windows")


@dataclass(frozen=True)
class Reading:
    """How one document was read for one query.

    :param read: ``"whole"`` (every token in one pair), ``"truncated"`` (only its first ``tokens`` tokens
        were read) or ``"windows"`` (``windows`` overlapping windows of at most ``tokens`` tokens each, the
        score being the best window's).
    :param tokens: document tokens in one model input: all of them (whole), the first N (truncated: N is the
        room ``max_length`` leaves next to the query and the special tokens), each window's length (windows).
    :param document_tokens: the document's length in tokens, as tokenised (a lower bound when the text was
        cut in characters before tokenising, see ``complete``).
    :param windows: model inputs the document took (1 unless ``read == "windows"``).
    :param best_window: 0-based index, in document order, of the window whose score is the document's
        (None unless ``read == "windows"``).
    :param complete: whether every part of the text reached the model: False when truncated, when
        ``max_windows`` spread windows with gaps between them, or when the text was cut in characters before
        tokenising (the engine's bound of ``max_length * 8`` characters per input, or a server's limit).
    :param query_tokens: query tokens in each pair.
    :param query_truncated: whether the query was cut (to half of a pair's room for text) to fit.
    """

    read: ReadKind
    tokens: int
    document_tokens: int
    windows: int = 1
    best_window: int | None = None
    complete: bool = True
    query_tokens: int = 0
    query_truncated: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The JSON form that REST, Haystack meta and the CLI show."""
        return asdict(self)


class Scored(NamedTuple):
    """Scores with the :class:`Reading` of each document (None where the scorer cannot tell)."""

    scores: np.ndarray
    readings: list[Reading] | None


def reading_of(
    spans: Sequence[tuple[int, int]],
    document_tokens: int,
    *,
    best_window: int = 0,
    clipped: bool = False,
    query_tokens: int = 0,
    query_truncated: bool = False,
) -> Reading:
    """The reading of a document split into token ``spans`` (the engine's model inputs for it).

    One span is ``whole`` when it covers the document, else ``truncated``; several are ``windows``, of which
    ``best_window`` scored highest. ``clipped``: the text was cut in characters before tokenising.
    """
    if not spans:
        raise ValueError("a document is read in at least one span")
    start, end = spans[0]
    if len(spans) == 1:
        whole = start == 0 and end >= document_tokens
        return Reading(
            read="whole" if whole else "truncated",
            tokens=end - start,
            document_tokens=document_tokens,
            complete=whole and not clipped,
            query_tokens=query_tokens,
            query_truncated=query_truncated,
        )
    gapless = all(nxt[0] <= prev[1] for prev, nxt in zip(spans, spans[1:], strict=False))
    covered = gapless and spans[0][0] == 0 and spans[-1][1] >= document_tokens
    return Reading(
        read="windows",
        tokens=max(e - s for s, e in spans),
        document_tokens=document_tokens,
        windows=len(spans),
        best_window=int(best_window),
        complete=covered and not clipped,
        query_tokens=query_tokens,
        query_truncated=query_truncated,
    )
