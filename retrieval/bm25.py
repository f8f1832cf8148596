"""Lexical first stage: BM25 over passages with bm25s (English stemming and stop words by default)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from winnow.retrieval.corpus import Passage
from winnow.retrieval.hit import Hit, collapse_to_documents

logger = logging.getLogger(__name__)


class BM25Retriever:
    """BM25 (Lucene variant) built in memory with bm25s.

    Defaults are bm25s' own (k1=1.5, b=0.75), with English stemming and stop words; what they give on each
    shared set is in benchmarks/results/first_stage_*.md.
    """

    name = "bm25"

    def __init__(
        self,
        passages: Sequence[Passage],
        *,
        k1: float = 1.5,
        b: float = 0.75,
        stemmer: str | None = "english",
        stopwords: str | None = "en",
        collapse_chunks: bool = True,
        show_progress: bool = False,
    ) -> None:
        import bm25s

        if not passages:
            raise ValueError("BM25Retriever needs at least one passage")
        self.passages = list(passages)
        self.collapse_chunks = collapse_chunks and any(p.parent_id for p in self.passages)
        self.show_progress = show_progress
        self._stopwords = stopwords
        self._stemmer = None
        if stemmer:
            import Stemmer

            self._stemmer = Stemmer.Stemmer(stemmer)
        self.description = f"bm25s (k1={k1}, b={b}, {stemmer or 'no'} stemming)"
        self._bm25 = bm25s.BM25(k1=k1, b=b, method="lucene")
        tokens = self._tokenize([p.full_text() for p in self.passages])
        self._bm25.index(tokens, show_progress=show_progress)

    def _tokenize(self, texts: list[str]):
        import bm25s

        return bm25s.tokenize(
            texts, stopwords=self._stopwords, stemmer=self._stemmer, show_progress=self.show_progress
        )

    def __len__(self) -> int:
        return len(self.passages)

    def retrieve(self, query: str, top_k: int = 10, *, allow_ids: Sequence[str] | None = None) -> list[Hit]:
        """The ``top_k`` best passages (documents, when the corpus is chunked) for one query, optionally
        restricted to the documents in ``allow_ids``."""
        return self.retrieve_batch([query], top_k, allow_ids=allow_ids)[0]

    def retrieve_batch(
        self, queries: Sequence[str], top_k: int = 10, *, allow_ids: Sequence[str] | None = None
    ) -> list[list[Hit]]:
        """``retrieve`` for many queries at once. ``allow_ids`` (document ids; a chunk is allowed when its
        document is) zeroes every other passage's score, so the restriction is exact, not a post-filter."""
        if top_k <= 0:
            raise ValueError(f"top_k must be positive, got {top_k}")
        if not queries:
            return []
        weight_mask = None
        if allow_ids is not None:
            allowed = set(allow_ids)
            weight_mask = np.fromiter((p.doc_id in allowed for p in self.passages), dtype=np.float32)
            if not weight_mask.any():
                return [[] for _ in queries]
        fetch = min(len(self.passages), top_k * 4 if self.collapse_chunks else top_k)
        tokens = self._tokenize(list(queries))
        indices, scores = self._bm25.retrieve(
            tokens, k=fetch, show_progress=False, n_threads=0, weight_mask=weight_mask
        )
        results = []
        for row_idx, row_scores in zip(indices, scores, strict=True):
            hits = [
                self._hit(int(i), float(s))
                for i, s in zip(row_idx, row_scores, strict=True)
                if np.isfinite(s) and s > 0
            ]
            if self.collapse_chunks:
                hits = collapse_to_documents(hits)
            results.append(hits[:top_k])
        return results

    def _hit(self, index: int, score: float) -> Hit:
        p = self.passages[index]
        return Hit(id=p.id, score=score, text=p.text, title=p.title, meta=dict(p.meta), parent_id=p.parent_id)
