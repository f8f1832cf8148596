"""Lexical first stage: BM25 over passages with bm25s (English stemming and stop words by default)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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

        self._configure(passages, k1, b, stemmer, stopwords, collapse_chunks, show_progress)
        self._bm25 = bm25s.BM25(k1=k1, b=b, method="lucene")
        tokens = self._tokenize([p.full_text() for p in self.passages])
        self._bm25.index(tokens, show_progress=show_progress)

    def _configure(
        self,
        passages: Sequence[Passage],
        k1: float,
        b: float,
        stemmer: str | None,
        stopwords: str | None,
        collapse_chunks: bool,
        show_progress: bool,
    ) -> None:
        if not passages:
            raise ValueError("BM25Retriever needs at least one passage")
        self.passages = list(passages)
        self.collapse_chunks = collapse_chunks and any(p.parent_id for p in self.passages)
        self.show_progress = show_progress
        self.params: dict[str, Any] = {"k1": k1, "b": b, "stemmer": stemmer, "stopwords": stopwords}
        self._stopwords = stopwords
        self._stemmer = None
        if stemmer:
            import Stemmer

            self._stemmer = Stemmer.Stemmer(stemmer)
        self.description = f"bm25s (k1={k1}, b={b}, {stemmer or 'no'} stemming)"

    def save(self, folder: str | Path) -> dict[str, Any]:
        """Save the bm25s index into ``folder`` (bm25s' own files; the passages are not saved) and return
        what :meth:`load` needs besides them: the settings and the passage count."""
        self._bm25.save(str(folder), show_progress=False)
        return {**self.params, "passages": len(self.passages)}

    @classmethod
    def load(
        cls,
        folder: str | Path,
        passages: Sequence[Passage],
        state: dict[str, Any],
        *,
        collapse_chunks: bool = True,
        show_progress: bool = False,
    ) -> BM25Retriever:
        """A retriever over ``passages`` (in the order it was built over) from the bm25s files :meth:`save`
        wrote in ``folder`` and the ``state`` it returned; nothing is tokenised but queries."""
        import bm25s

        if state.get("passages") != len(passages):
            raise ValueError(f"{folder} indexes {state.get('passages')} passages, not {len(passages)}")
        self = cls.__new__(cls)
        self._configure(
            passages,
            state["k1"],
            state["b"],
            state["stemmer"],
            state["stopwords"],
            collapse_chunks,
            show_progress,
        )
        self._bm25 = bm25s.BM25.load(str(folder))
        found = self._bm25.scores.get("num_docs")
        if found != len(passages):
            raise ValueError(f"{folder} holds {found} documents, not {len(passages)}")
        return self

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
