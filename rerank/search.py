"""Two-stage search: a first-stage retriever proposes candidates, the cross-encoder reorders them."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from winnow.rerank.interpolation import check_weight, interpolate
from winnow.rerank.reading import Reading, Scored
from winnow.rerank.scorer import Scorer, scorer_depth, scorer_keeps_first_stage, scorer_weight
from winnow.retrieval.hit import Hit, Retriever

logger = logging.getLogger(__name__)

DEFAULT_CANDIDATES = 100  # first-stage candidates reranked when neither the caller nor the model card says


@dataclass
class RankedHit:
    """A result after both stages: its final score and rank, and what the first stage said."""

    id: str
    score: float
    rank: int
    first_stage_score: float
    first_stage_rank: int
    text: str = ""
    title: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    rerank_score: float | None = None  # the cross-encoder's own score when ``score`` is interpolated
    dense_rank: int | None = None  # its rank in the dense retriever's list (None: not in it, or no dense)
    bm25_rank: int | None = None  # its rank in BM25's list (None: not in it, or no BM25)
    reading: Reading | None = None  # how the cross-encoder read it (None: not reranked, or cannot tell)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "id": self.id,
            "score": self.score,
            "first_stage_score": self.first_stage_score,
            "rank": self.rank,
            "first_stage_rank": self.first_stage_rank,
            "title": self.title,
            "text": self.text,
            "meta": self.meta,
            "dense_rank": self.dense_rank,
            "bm25_rank": self.bm25_rank,
        }
        if self.rerank_score is not None:
            out["rerank_score"] = self.rerank_score
        if self.reading is not None:
            out["reading"] = self.reading.to_dict()
        return out


@dataclass
class SearchResult:
    query: str
    results: list[RankedHit]
    timings_ms: dict[str, float]
    reranked: bool


def rerank_hits(
    query: str, hits: Sequence[Hit], scorer: Scorer, *, interpolation_weight: float | None = None
) -> list[RankedHit]:
    """Score every hit with ``scorer`` and order by that score (ties keep first-stage order).

    With an interpolation weight (given, or from the scorer's model card; see :func:`scorer_weight`) below
    1, the score is ``w * minmax(rerank) + (1 - w) * minmax(first stage)`` over these hits and the
    cross-encoder's own score is kept in ``rerank_score``.
    """
    if not hits:
        return []
    scored = score_with_readings(scorer, query, [h.full_text() for h in hits])
    return rank_by_scores(hits, scored.scores, scorer_weight(scorer, interpolation_weight), scored.readings)


def score_with_readings(scorer: Scorer, query: str, documents: Sequence[str]) -> Scored:
    """``scorer``'s scores, with how it read each document when it can tell (the engine and the
    micro-batcher can: ``score_with_readings``); else readings None."""
    method = getattr(scorer, "score_with_readings", None)
    if method is not None:
        return method(query, documents)
    return Scored(scorer.score(query, documents), None)


def rank_by_scores(
    hits: Sequence[Hit],
    raw_scores: np.ndarray,
    weight: float | None,
    readings: Sequence[Reading] | None = None,
) -> list[RankedHit]:
    """Order ``hits`` by the reranker's ``raw_scores`` (interpolated with the first stage's when ``weight``
    is below 1), each with its reading when ``readings`` are given; see :func:`rerank_hits`."""
    if not hits:
        return []
    raw = np.asarray(raw_scores, dtype=np.float64)
    interpolated = weight is not None and weight < 1.0
    scores = interpolate(raw, [h.score for h in hits], weight) if interpolated else raw
    order = np.argsort(-scores, kind="stable")
    return [
        RankedHit(
            id=hits[i].doc_id,
            score=float(scores[i]),
            rank=rank,
            first_stage_score=hits[i].score,
            first_stage_rank=int(i) + 1,
            text=hits[i].text,
            title=hits[i].title,
            meta=dict(hits[i].meta),
            rerank_score=float(raw[i]) if interpolated else None,
            dense_rank=hits[i].ranks.get("dense"),
            bm25_rank=hits[i].ranks.get("bm25"),
            reading=None if readings is None else readings[i],
        )
        for rank, i in enumerate(order, start=1)
    ]


def first_stage_only(hits: Sequence[Hit]) -> list[RankedHit]:
    return [
        RankedHit(
            id=h.doc_id,
            score=h.score,
            rank=r,
            first_stage_score=h.score,
            first_stage_rank=r,
            text=h.text,
            title=h.title,
            meta=dict(h.meta),
            dense_rank=h.ranks.get("dense"),
            bm25_rank=h.ranks.get("bm25"),
        )
        for r, h in enumerate(hits, start=1)
    ]


@dataclass
class FirstStage:
    """What :meth:`TwoStageSearch.retrieve` found: the hits, and whether the reranker is to score them
    (``texts`` are what it scores). :meth:`TwoStageSearch.finish` turns it and the scores into a result."""

    query: str
    hits: list[Hit]
    top_k: int
    rerank: bool
    started: float
    timings_ms: dict[str, float]

    @property
    def texts(self) -> list[str]:
        return [h.full_text() for h in self.hits]


class TwoStageSearch:
    """First stage for ``candidates`` hits, then (with a reranker) cross-encoder reranking to ``top_k``.

    ``interpolation_weight``: None uses the weight the reranker's model card records (pure reranking when it
    has none); a number in [0, 1] overrides it (1 = pure reranker). At weight 0 the reranker is not run: the
    result is the first stage's order, and :attr:`first_stage_only` says why (logged once).
    ``candidates``: None reranks as many as the reranker's model card says (its ``depth``), else 100.
    """

    def __init__(
        self,
        first_stage: Retriever,
        reranker: Scorer | None = None,
        *,
        candidates: int | None = None,
        interpolation_weight: float | None = None,
    ) -> None:
        candidates = scorer_depth(reranker, DEFAULT_CANDIDATES) if candidates is None else candidates
        if candidates <= 0:
            raise ValueError(f"candidates must be positive, got {candidates}")
        self.first_stage = first_stage
        self.reranker = reranker
        self.candidates = candidates
        self.interpolation_weight = check_weight(interpolation_weight)
        self.first_stage_only = scorer_keeps_first_stage(reranker, self.interpolation_weight)
        if self.first_stage_only:
            logger.warning(self.first_stage_only)

    def search(
        self,
        query: str,
        *,
        top_k: int = 10,
        candidates: int | None = None,
        rerank: bool = True,
        allow_ids: Sequence[str] | None = None,
    ) -> SearchResult:
        """``allow_ids`` restricts the first stage to those documents (an empty list finds nothing); it
        needs a first stage that takes ``allow_ids`` (dense, BM25 and hybrid all do)."""
        stage = self.retrieve(query, top_k=top_k, candidates=candidates, rerank=rerank, allow_ids=allow_ids)
        if stage.rerank and stage.hits:
            assert self.reranker is not None
            scored = score_with_readings(self.reranker, query, stage.texts)
            return self.finish(stage, scored.scores, scored.readings)
        return self.finish(stage, None)

    def retrieve(
        self,
        query: str,
        *,
        top_k: int = 10,
        candidates: int | None = None,
        rerank: bool = True,
        allow_ids: Sequence[str] | None = None,
    ) -> FirstStage:
        """The first stage of :meth:`search` alone (blocking); score ``.texts`` when ``.rerank``, then
        :meth:`finish`. Lets a caller await the reranker elsewhere (an event loop)."""
        if not isinstance(query, str) or not query.strip():
            raise ValueError("query must be a non-empty string")
        if top_k <= 0:
            raise ValueError(f"top_k must be positive, got {top_k}")
        candidates = max(candidates or self.candidates, top_k)
        use_reranker = rerank and self.reranker is not None and self.first_stage_only is None
        t0 = time.perf_counter()
        depth = candidates if use_reranker else top_k
        if allow_ids is None:
            hits = self.first_stage.retrieve_batch([query], depth)[0]
        elif allow_ids:
            hits = self.first_stage.retrieve_batch([query], depth, allow_ids=allow_ids)[0]  # type: ignore[call-arg]
        else:
            hits = []
        timings = {"first_stage": (time.perf_counter() - t0) * 1000}
        return FirstStage(query, _with_ranks(hits, self.first_stage), top_k, use_reranker, t0, timings)

    def finish(
        self,
        stage: FirstStage,
        raw_scores: np.ndarray | None,
        readings: Sequence[Reading] | None = None,
    ) -> SearchResult:
        """The result of a :meth:`retrieve`, given the reranker's scores of its ``texts`` (None: the first
        stage's order, which a stage with ``rerank`` accepts only without hits) and, optionally, how it read
        each (:class:`rerank.reading.Reading`, shown on each hit)."""
        timings = dict(stage.timings_ms)
        if stage.rerank:
            if raw_scores is None and stage.hits:
                raise ValueError("this first stage is to be reranked: pass the scores of its texts")
            weight = scorer_weight(self.reranker, self.interpolation_weight)
            raw = np.zeros(0) if raw_scores is None else raw_scores
            ranked = rank_by_scores(stage.hits, raw, weight, readings)[: stage.top_k]
            timings["rerank"] = (time.perf_counter() - stage.started) * 1000 - timings["first_stage"]
        else:
            ranked = first_stage_only(stage.hits[: stage.top_k])
        timings["total"] = (time.perf_counter() - stage.started) * 1000
        return SearchResult(query=stage.query, results=ranked, timings_ms=timings, reranked=stage.rerank)


def _with_ranks(hits: Sequence[Hit], first_stage: Retriever) -> list[Hit]:
    """A single retriever's hits, each with its rank under the retriever's name (fused hits have theirs)."""
    name = getattr(first_stage, "name", None)
    if not name:
        return list(hits)
    return [h if h.ranks else replace(h, ranks={name: r}) for r, h in enumerate(hits, start=1)]
