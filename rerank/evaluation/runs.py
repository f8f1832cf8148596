"""Evaluation runs: one first-stage pass and one set of rerank scores at the deepest depth, reused for all.

:func:`run_evaluation` retrieves ``max(depths)`` candidates per query once, scores them all with the
reranker once, and returns an :class:`EvalRun` from which the run of either stage at any smaller depth is cut
without more model calls (a depth-``d`` rerank reorders the first stage's top ``d`` by the same scores).
Results are documents: chunked indexes already collapse chunks into their documents. Arguana-style datasets
hold each query in the corpus under its own id; such self-hits are dropped (as BEIR does).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from winnow.rerank.interpolation import check_weight, interpolated_ranking
from winnow.rerank.scorer import Scorer, scorer_keeps_first_stage, scorer_weight
from winnow.retrieval.corpus import Dataset
from winnow.retrieval.first_stage import build_first_stage
from winnow.retrieval.hit import Hit, Retriever

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_DEPTHS",
    "EvalRun",
    "Ranked",
    "as_run",
    "first_stage_pass",
    "parse_depths",
    "rerank_pass",
    "run_evaluation",
    "tie_broken",
]

DEFAULT_DEPTHS = (100,)

Ranked = list[tuple[str, float]]  # (document id, score), best first


def parse_depths(value: str | int | Sequence[int]) -> list[int]:
    """``"100"``, ``"10,20,50,100"``, ``100`` or ``[10, 100]`` as a sorted list of distinct positive ints."""
    if isinstance(value, bool):
        raise ValueError(f"depth must be a positive integer or a comma-separated list, got {value!r}")
    if isinstance(value, int):
        items: list[Any] = [value]
    elif isinstance(value, str):
        items = [part.strip() for part in value.split(",") if part.strip()]
    else:
        items = list(value)
    depths = []
    for item in items:
        try:
            depth = int(item)
        except (TypeError, ValueError):
            depth = 0
        if depth <= 0 or (isinstance(item, float) and not item.is_integer()):
            raise ValueError(
                "depth must be a positive integer or a comma-separated list such as 10,20,50,100; "
                f"got {value!r}"
            )
        depths.append(depth)
    if not depths:
        raise ValueError("at least one depth is needed, e.g. --depth 100 or --depth 10,20,50,100")
    return sorted(set(depths))


@dataclass
class EvalRun:
    """What one evaluation produced: first-stage candidates at the deepest depth and their rerank scores.

    ``first_stage`` maps each query id to its ranked ``(doc id, score)`` candidates (at most
    ``max(depths)``); ``rerank_scores`` maps each query id to ``{doc id: rerank score}`` for those
    candidates, or is None when no reranker ran. Every query in ``queries`` is evaluated; a query without
    candidates counts as a miss (score 0), never silently dropped.
    """

    dataset: str
    split: str
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    depths: list[int]
    first_stage: dict[str, Ranked]
    rerank_scores: dict[str, dict[str, float]] | None = None
    first_stage_info: dict[str, Any] = field(default_factory=dict)
    reranker_info: dict[str, Any] | None = None
    first_stage_ms: list[float] = field(default_factory=list)
    rerank_ms: list[float] = field(default_factory=list)
    pairs: int = 0
    self_hits_removed: int = 0
    interpolation_weight: float | None = None
    interpolation_source: str | None = None
    first_stage_only: str | None = None  # why the reranker was not run: its card keeps the first stage

    def __post_init__(self) -> None:
        self.depths = parse_depths(self.depths)
        self.interpolation_weight = check_weight(self.interpolation_weight)
        missing = [qid for qid in self.queries if qid not in self.first_stage]
        if missing:
            raise ValueError(
                f"first_stage has no candidate list for {len(missing)} queries (e.g. {missing[0]!r}); "
                "give every query a list, empty when nothing was found"
            )
        if self.rerank_scores is not None:
            for qid, ranked in self.first_stage.items():
                scores = self.rerank_scores.get(qid, {})
                absent = [doc for doc, _ in ranked if doc not in scores]
                if absent:
                    raise ValueError(f"query {qid!r}: no rerank score for candidate {absent[0]!r}")

    @property
    def max_depth(self) -> int:
        return self.depths[-1]

    @property
    def reranked(self) -> bool:
        return self.rerank_scores is not None

    def first_stage_lists(self, depth: int | None = None) -> dict[str, Ranked]:
        """Each query's first-stage top ``depth`` (default: the deepest)."""
        depth = depth or self.max_depth
        return {qid: list(self.first_stage[qid][:depth]) for qid in self.queries}

    def reranked_lists(self, depth: int | None = None) -> dict[str, Ranked]:
        """Each query's first-stage top ``depth`` reordered by rerank score (ties keep first-stage order)."""
        if self.rerank_scores is None:
            raise ValueError("this run has no reranker scores")
        depth = depth or self.max_depth
        out: dict[str, Ranked] = {}
        for qid in self.queries:
            scores = self.rerank_scores[qid] if self.first_stage[qid] else {}
            candidates = [(doc, float(scores[doc])) for doc, _ in self.first_stage[qid][:depth]]
            order = sorted(range(len(candidates)), key=lambda i: -candidates[i][1])  # stable
            out[qid] = [candidates[i] for i in order]
        return out

    @property
    def interpolated(self) -> bool:
        """Whether an interpolated ranking (reranker + first stage, :mod:`rerank.interpolation`) exists."""
        if self.first_stage_only is not None:
            return self.interpolation_weight == 0.0
        return self.rerank_scores is not None and self.interpolation_weight is not None

    def interpolated_lists(self, depth: int | None = None, weight: float | None = None) -> dict[str, Ranked]:
        """Each query's first-stage top ``depth`` reordered by ``weight * minmax(rerank) + (1 - weight) *
        minmax(first stage)``; ``weight`` defaults to the run's ``interpolation_weight``."""
        weight = self.interpolation_weight if weight is None else check_weight(weight, "weight")
        if self.rerank_scores is None and self.first_stage_only is not None and weight == 0.0:
            return self.first_stage_lists(depth)  # weight 0 is the first stage's order: the model never ran
        if self.rerank_scores is None:
            raise ValueError("this run has no reranker scores")
        if weight is None:
            raise ValueError("this run has no interpolation weight; pass one")
        first = self.first_stage_lists(depth)
        scores = self.rerank_scores
        return {q: interpolated_ranking(first[q], scores.get(q, {}), weight) for q in self.queries}

    def lists(self, stage: str, depth: int | None = None) -> dict[str, Ranked]:
        """``stage`` is ``"first_stage"``, ``"reranked"`` or ``"interpolated"``."""
        if stage == "first_stage":
            return self.first_stage_lists(depth)
        if stage == "reranked":
            return self.reranked_lists(depth)
        if stage == "interpolated":
            return self.interpolated_lists(depth)
        raise ValueError(f"unknown stage {stage!r}; use 'first_stage', 'reranked' or 'interpolated'")


def tie_broken(ranked: Ranked) -> Ranked:
    """``ranked`` with scores made strictly decreasing in list order, at float32 precision.

    Evaluators re-sort a run by score and break ties by document id, and ir-measures' providers do not even
    agree on the direction (pytrec_eval: descending ids, its RR@k provider: ascending); pytrec_eval also
    compares scores as float32, so scores closer than that tie too. A score that does not fall below the
    previous one in float32 is replaced by the next float32 below it; the others are kept as they are. Every
    tool then reads the list in the order the system returned it.
    """
    out: Ranked = []
    previous = np.float32(np.inf)
    for doc, score in ranked:
        value = float(score)
        single = np.float32(value)
        if not single < previous:
            single = np.nextafter(previous, np.float32(-np.inf))
            value = float(single)
        out.append((doc, value))
        previous = single
    return out


def as_run(lists: Mapping[str, Ranked]) -> dict[str, dict[str, float]]:
    """Ranked lists as an ir-measures run ``{qid: {doc id: score}}`` that keeps each list's order
    (see :func:`tie_broken`)."""
    return {qid: dict(tie_broken(ranked)) for qid, ranked in lists.items()}


# --------------------------------------------------------------------------- the run
def run_evaluation(
    dataset: Dataset,
    split: str = "test",
    *,
    first_stage: str | Retriever = "dense",
    index: str | Path | Any | None = None,
    embedder: Any = None,
    reranker: str | Scorer | None = None,
    depths: str | int | Sequence[int] = DEFAULT_DEPTHS,
    device: str | None = None,
    max_queries: int | None = None,
    show_progress: bool | None = None,
    interpolation_weight: float | None = None,
    rerank_titles: bool = True,
    ray_address: str | None = None,
    ray_workers: int | None = None,
) -> EvalRun:
    """Retrieve once at ``max(depths)`` for every judged query of ``split``, rerank those candidates once.

    :param first_stage: ``"dense"``, ``"bm25"``, ``"hybrid"`` or any object with ``retrieve_batch``.
    :param index: index directory (or ``WinnowIndex``) to search; None builds what the first stage needs.
    :param embedder: bi-encoder for dense/hybrid (must match ``index``); None = the index's or the default.
    :param reranker: a cross-encoder name/folder, any object with ``score(query, docs)``, or None.
    :param max_queries: evaluate only the first N judged queries (smoke runs).
    :param interpolation_weight: weight of the interpolated reranker reported next to the pure one; None
        takes the one the reranker's model card records (none: only the pure reranker is reported).
    :param show_progress: progress bars; None shows them when this module logs at INFO or lower.
    :param rerank_titles: the reranker reads ``title. text`` (True) or the text alone, e.g. where only the
        test split's documents have titles, as in arguana, and the model was trained without them.
    :param ray_address: rerank the queries in parallel on Ray actors (``"local"`` or a cluster address;
        see :mod:`rerank.evaluation.ray_rerank`); ``ray_workers`` sizes the pool (default: per GPU, else CPU).
    """
    depth_list = parse_depths(depths)
    max_depth = depth_list[-1]
    if show_progress is None:
        show_progress = logger.getEffectiveLevel() <= logging.INFO
    queries = dataset.split_queries(split)
    if max_queries is not None:
        if max_queries <= 0:
            raise ValueError(f"max_queries must be positive, got {max_queries}")
        queries = dict(list(queries.items())[:max_queries])
    if not queries:
        raise ValueError(f"split {split!r} of {dataset.name!r} has no judged queries with text")
    if isinstance(first_stage, str):
        retriever, fs_info = build_first_stage(
            first_stage,
            dataset,
            index=index,
            embedder=embedder,
            device=device,  # a hybrid fuses its retrievers' top 100 (more when deeper), as `winnow search`
            show_progress=show_progress,
        )
    else:
        retriever = first_stage
        fs_info = {"name": getattr(first_stage, "name", type(first_stage).__name__), "model": None}
    scorer, rr_info = _resolve_reranker(reranker, device)
    corpus_ids = {p.id for p in dataset.corpus} | {p.doc_id for p in dataset.corpus}
    fetch = max_depth + 1 if any(qid in corpus_ids for qid in queries) else max_depth
    hits, fs_ms, removed = first_stage_pass(retriever, queries, fetch, max_depth, show_progress)
    if removed:
        logger.info("dropped %d hits whose id equals their query's id (arguana-style)", removed)
    run = EvalRun(
        dataset=dataset.name,
        split=split,
        queries=queries,
        qrels={qid: dict(dataset.qrels[split].get(qid, {})) for qid in queries},
        depths=depth_list,
        first_stage={qid: [(h.doc_id, float(h.score)) for h in row] for qid, row in hits.items()},
        first_stage_info=fs_info,
        first_stage_ms=fs_ms,
        self_hits_removed=removed,
    )
    keeps_first_stage = None
    if scorer is not None and interpolation_weight is None:
        keeps_first_stage = scorer_keeps_first_stage(scorer, None)
    if keeps_first_stage is not None:  # as users get it: `winnow search`, serve and WinnowRanker skip it
        logger.warning("%s: not running the reranker: %s", dataset.name, keeps_first_stage)
        run.first_stage_only = keeps_first_stage
        run.reranker_info = {**rr_info, "titles": rerank_titles, "first_stage_only": keeps_first_stage}
        run.interpolation_weight, run.interpolation_source = 0.0, "model card"
    elif scorer is not None:
        if ray_address is not None:
            from winnow.rerank.evaluation.ray_rerank import rerank_pass_ray
            from winnow.retrieval.ray_cluster import ray_session

            with ray_session(ray_address):
                run.rerank_scores, run.rerank_ms, run.pairs = rerank_pass_ray(
                    scorer, queries, hits, show_progress, titles=rerank_titles, workers=ray_workers
                )
        else:
            run.rerank_scores, run.rerank_ms, run.pairs = rerank_pass(
                scorer, queries, hits, show_progress, titles=rerank_titles
            )
        run.reranker_info = {**rr_info, "titles": rerank_titles}
        run.interpolation_weight = scorer_weight(scorer, interpolation_weight)
        if run.interpolation_weight is not None:
            run.interpolation_source = "argument" if interpolation_weight is not None else "model card"
    return run


def first_stage_pass(
    retriever: Retriever, queries: dict[str, str], fetch: int, depth: int, show_progress: bool
) -> tuple[dict[str, list[Hit]], list[float], int]:
    """One retrieval per query (timed), self-hits dropped, cut to ``depth`` documents."""
    out: dict[str, list[Hit]] = {}
    timings: list[float] = []
    removed = 0
    bar = tqdm(queries.items(), desc="first stage", unit="query", disable=not show_progress)
    for qid, text in bar:
        start = time.perf_counter()
        hits = retriever.retrieve_batch([text], top_k=fetch)[0]
        timings.append((time.perf_counter() - start) * 1000)
        kept: list[Hit] = []
        seen: set[str] = set()
        for hit in hits:
            doc = hit.doc_id
            if doc == qid:
                removed += 1
                continue
            if doc in seen:  # a retriever that returns chunks: keep each document's best
                continue
            seen.add(doc)
            kept.append(hit)
        out[qid] = kept[:depth]
    return out, timings, removed


def rerank_pass(
    scorer: Scorer,
    queries: dict[str, str],
    hits: dict[str, list[Hit]],
    show_progress: bool,
    titles: bool = True,
) -> tuple[dict[str, dict[str, float]], list[float], int]:
    """Score every query's candidates once (``title. text``, or the text alone); per-query latency and the
    number of pairs scored."""
    scores: dict[str, dict[str, float]] = {}
    timings: list[float] = []
    pairs = 0
    bar = tqdm(queries.items(), desc="reranking", unit="query", disable=not show_progress)
    for qid, text in bar:
        row = hits[qid]
        if not row:
            scores[qid] = {}
            continue
        docs = [h.full_text() if titles else h.text for h in row]
        start = time.perf_counter()
        values = np.asarray(scorer.score(text, docs), dtype=np.float64).reshape(-1)
        timings.append((time.perf_counter() - start) * 1000)
        if len(values) != len(docs):
            raise ValueError(f"reranker returned {len(values)} scores for {len(docs)} documents")
        scores[qid] = dict(zip([h.doc_id for h in row], values.tolist(), strict=True))
        pairs += len(docs)
    return scores, timings, pairs


def _resolve_reranker(reranker: str | Scorer | None, device: str | None) -> tuple[Scorer | None, dict]:
    if reranker is None:
        return None, {}
    if isinstance(reranker, str):
        from winnow.rerank.engine import CrossEncoderEngine

        reranker = CrossEncoderEngine(reranker, device=device).load()
    if not callable(getattr(reranker, "score", None)):
        raise TypeError(f"reranker must have a score(query, documents) method, got {type(reranker).__name__}")
    info = {
        "model": getattr(reranker, "model_name", None) or type(reranker).__name__,
        "device": str(getattr(reranker, "device", None) or "n/a"),
    }
    for key in ("backend", "dtype", "max_length"):  # how the engine ran, so that reports stay comparable
        try:
            value = getattr(reranker, key, None)
        except (AssertionError, RuntimeError):  # e.g. max_length of an engine not loaded yet
            continue
        if key == "dtype" and value is not None:
            value = str(value).removeprefix("torch.")  # torch.dtype -> "bfloat16"
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            info[key] = value
    windows = getattr(reranker, "windows", None)
    if isinstance(windows, bool):
        info["windows"] = windows
    note = getattr(reranker, "backend_note", None)
    if isinstance(note, str) and note:  # backend="auto" looked for a quantised backend and runs fp32: why
        info["backend_note"] = note
    return reranker, info
