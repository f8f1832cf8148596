"""Pure functions on token-id lists: overlapping windows over long documents, pair inputs for a cross-encoder.

A cross-encoder reads ``[CLS] query [SEP] document [SEP]`` up to its maximum length. A document longer than
the room left after the query is split into overlapping windows here; the engine scores each window as its own
pair and keeps the maximum, so the end of a long document is never silently cut off.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from winnow.retrieval.chunker import window_spans

__all__ = ["PairTemplate", "doc_budget", "truncate_query", "window_spans"]


def truncate_query(query_ids: Sequence[int], max_length: int, num_special: int) -> list[int]:
    """Keep at most half of the room a pair has for text (``max_length - num_special``) for the query."""
    room = max_length - num_special
    if room < 2:
        raise ValueError(
            f"max_length={max_length} leaves no room for text next to {num_special} special tokens; "
            "raise max_length"
        )
    return list(query_ids[: room // 2])


def doc_budget(query_len: int, max_length: int, num_special: int) -> int:
    """Tokens left for the document once the query and the special tokens of a pair are placed."""
    budget = max_length - num_special - query_len
    if budget <= 0:
        raise ValueError(
            f"no room for the document: max_length={max_length}, query {query_len} tokens, "
            f"{num_special} special tokens; truncate the query (truncate_query) or raise max_length"
        )
    return budget


@dataclass(frozen=True)
class PairTemplate:
    """Where a tokenizer puts its special tokens around a (query, document) pair, e.g. BERT's
    ``[CLS] A [SEP] B [SEP]`` with token types ``0 0.. 0 1.. 1``; RoBERTa's ``<s> A </s></s> B </s>``.

    ``prefix``/``middle``/``suffix`` are the special-token ids before A, between A and B and after B; the
    ``*_types`` fields are the matching token-type ids (``a_type``/``b_type`` for every token of A/B).
    """

    prefix: tuple[int, ...]
    middle: tuple[int, ...]
    suffix: tuple[int, ...]
    prefix_types: tuple[int, ...] = ()
    middle_types: tuple[int, ...] = ()
    suffix_types: tuple[int, ...] = ()
    a_type: int = 0
    b_type: int = 0

    @property
    def num_special(self) -> int:
        """Number of special tokens a pair gets."""
        return len(self.prefix) + len(self.middle) + len(self.suffix)

    def build(self, query_ids: Sequence[int], doc_ids: Sequence[int]) -> tuple[list[int], list[int]]:
        """``(input_ids, token_type_ids)`` of one pair."""
        ids = [*self.prefix, *query_ids, *self.middle, *doc_ids, *self.suffix]
        types = [
            *self._types(self.prefix_types, len(self.prefix)),
            *([self.a_type] * len(query_ids)),
            *self._types(self.middle_types, len(self.middle)),
            *([self.b_type] * len(doc_ids)),
            *self._types(self.suffix_types, len(self.suffix)),
        ]
        return ids, types

    @staticmethod
    def _types(types: tuple[int, ...], n: int) -> tuple[int, ...]:
        return types if len(types) == n else (0,) * n
