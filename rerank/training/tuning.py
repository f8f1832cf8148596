"""Choosing a reranker's defaults on queries it was not trained on, never a test split: the interpolation
weight with the first stage (:func:`tune_weight`, :func:`tune_interpolation`) and whether long documents are
read by their best window or truncated (:func:`choose_windows`). The choices go into the model card."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ir_measures
import numpy as np

from winnow.rerank.card import CARD_FILE, read_card, save_card
from winnow.rerank.engine import CrossEncoderEngine
from winnow.rerank.evaluation.runs import (
    EvalRun,
    Ranked,
    as_run,
    first_stage_pass,
    rerank_pass,
    run_evaluation,
)
from winnow.rerank.evaluation.statistics import paired_t_test
from winnow.rerank.interpolation import DEFAULT_GRID, FORMULA, check_weight, interpolated_ranking
from winnow.rerank.training.mining import mine_beir
from winnow.rerank.training.pairs import PairSource, TrainingSet, build_training_set
from winnow.retrieval.corpus import Dataset

logger = logging.getLogger(__name__)

__all__ = [
    "ALPHA",
    "WeightTuning",
    "choose_windows",
    "per_query_ndcg",
    "rebuild_training_set",
    "retune",
    "tune_interpolation",
    "tune_weight",
    "tuning_split",
]

_MEASURE = ir_measures.nDCG @ 10
ALPHA = 0.05  # truncation replaces windows (the default) only on this much evidence


@dataclass
class WeightTuning:
    """The weight :func:`tune_weight` chose and the nDCG@10 of every weight of the grid."""

    weight: float
    scores: dict[float, float]
    queries: int
    measure: str = str(_MEASURE)
    info: dict[str, Any] = field(default_factory=dict)
    per_query: list[float] = field(default_factory=list, repr=False)  # nDCG@10 at ``weight``, query order

    @property
    def best(self) -> float:
        return self.scores[self.weight]

    def to_dict(self) -> dict[str, Any]:
        return {
            "weight": self.weight,
            "measure": self.measure,
            "queries": self.queries,
            "grid": {f"{w:.2f}": round(s, 6) for w, s in sorted(self.scores.items())},
            "ndcg_pure_reranker": round(self.scores[1.0], 6) if 1.0 in self.scores else None,
            "ndcg_first_stage": round(self.scores[0.0], 6) if 0.0 in self.scores else None,
            "ndcg_interpolated": round(self.best, 6),
            **self.info,
        }


def tune_weight(
    runs: Sequence[Any] | Any, *, grid: Sequence[float] = DEFAULT_GRID, depth: int | None = None
) -> WeightTuning:
    """Pick the interpolation weight with the best mean nDCG@10 over the queries of ``runs``.

    :param runs: one or more :class:`rerank.evaluation.EvalRun` with rerank scores (e.g. a dev split of each
        training dataset); all their queries are pooled.
    :param grid: weights tried (default 0, 0.1, ..., 1). Ties go to the larger weight.
    :param depth: candidates reordered per query (default each run's deepest).
    """
    runs = list(runs) if isinstance(runs, (list, tuple)) else [runs]
    if not runs:
        raise ValueError("tune_weight needs at least one evaluation run")
    weights = sorted({check_weight(w, "grid weight") for w in grid})
    if not weights:
        raise ValueError("the weight grid is empty")
    per_weight: dict[float, list[float]] = {w: [] for w in weights}
    n_queries = 0
    for r, run in enumerate(runs):
        if not run.reranked:
            raise ValueError(f"run {r} ({run.dataset}/{run.split}) has no rerank scores to interpolate")
        qids = list(run.queries)
        n_queries += len(qids)
        first = run.first_stage_lists(depth)
        qrels = {q: {d: int(g) for d, g in run.qrels.get(q, {}).items()} for q in qids}
        for w in weights:
            lists = {q: interpolated_ranking(first[q], run.rerank_scores.get(q, {}), w) for q in qids}
            per_weight[w].extend(per_query_ndcg(qrels, lists, qids))
    scores = {w: float(np.mean(v)) if v else 0.0 for w, v in per_weight.items()}
    best = max(weights, key=lambda w: (round(scores[w], 12), w))
    logger.info(
        "interpolation weight %.2f: nDCG@10 %.4f (pure reranker %.4f, first stage %.4f) over %d queries",
        best,
        scores[best],
        scores.get(1.0, float("nan")),
        scores.get(0.0, float("nan")),
        n_queries,
    )
    return WeightTuning(weight=best, scores=scores, queries=n_queries, per_query=per_weight[best])


def per_query_ndcg(
    qrels: dict[str, dict[str, int]], lists: Mapping[str, Ranked], qids: list[str]
) -> list[float]:
    """nDCG@10 of each query of ``qids`` (in that order) for the ranked ``lists``; a query without a list or
    without judged hits scores 0."""
    values = dict.fromkeys(qids, 0.0)
    run = {q: r for q, r in as_run({q: lists[q] for q in qids}).items() if r}
    if run:
        for row in ir_measures.iter_calc([_MEASURE], qrels, run):
            if row.query_id in values:
                values[row.query_id] = float(row.value)
    return [values[q] for q in qids]


def tune_interpolation(
    model_dir: str | Path,
    training_set: TrainingSet,
    *,
    split: str = "auto",
    depth: int = 30,
    max_queries: int | None = None,
    device: str | None = None,
    show_progress: bool = False,
    grid: Sequence[float] = DEFAULT_GRID,
    windows: bool | None = None,
) -> WeightTuning | None:
    """Tune the interpolation weight of the model in ``model_dir`` over its BEIR sources' first stages.

    For each BEIR source, with ``split="auto"``: its dev split when it has one it was not trained on, else
    the queries held apart from its training split; a named split (never ``test``) or ``"heldout"`` forces
    one. Candidates come from the same first stage that mined the negatives. Returns None when no source
    has queries to tune on (pairs files have no first stage). ``windows`` as in
    :class:`~winnow.rerank.engine.CrossEncoderEngine` (None: the card's choice, else best-window scoring).
    """
    if split == "test":
        raise ValueError("never tune on a test split: use dev, heldout or auto")
    engine = CrossEncoderEngine(str(model_dir), device=device, windows=windows)
    runs: list[EvalRun] = []
    used: list[str] = []
    for source in training_set.sources:
        if source.kind != "beir" or source.dataset is None:
            continue
        chosen = tuning_split(source, split)
        run = _tuning_run(source, chosen, training_set, engine, depth, max_queries, show_progress)
        if run is not None:
            runs.append(run)
            used.append(f"{source.dataset.name}/{chosen}")
    if not runs:
        logger.warning("no BEIR source with queries to tune an interpolation weight on; none recorded")
        return None
    tuning = tune_weight(runs, grid=grid, depth=depth)
    per_dataset = {}
    if len(runs) > 1:  # a mixed model: one weight is stored, but say what each set would have chosen
        for name, run in zip(used, runs, strict=True):
            alone = tune_weight([run], grid=grid, depth=depth).to_dict()
            keep = ("weight", "queries", "ndcg_first_stage", "ndcg_pure_reranker", "ndcg_interpolated")
            per_dataset[name] = {key: alone[key] for key in keep}
    tuning.info = {
        "split": ", ".join(
            name + (" (held-apart training queries)" if name.endswith("/heldout") else "") for name in used
        ),
        "depth": depth,
        "first_stage": ", ".join(
            sorted({str(s.info.get("first_stage")) for s in training_set.sources if s.kind == "beir"})
        ),
        "formula": FORMULA,
    }
    if per_dataset:
        tuning.info["per_dataset"] = per_dataset
    return tuning


def _tuning_run(
    source: PairSource,
    chosen: str,
    training_set: TrainingSet,
    engine: CrossEncoderEngine,
    depth: int,
    max_queries: int | None,
    show_progress: bool,
) -> EvalRun | None:
    """``source``'s first-stage candidates on split ``chosen`` (``heldout``: its mined candidates of the
    held-apart training queries), scored by ``engine``; None when there is nothing to tune on."""
    assert source.dataset is not None
    if chosen == "heldout":
        qids = [q for q in source.candidates if source.queries[q] in training_set.eval_queries]
        queries = {q: source.queries[q] for q in qids[:max_queries]}
        hits = {q: list(source.candidates[q][:depth]) for q in queries}
        qrels = {q: dict(source.qrels.get(q, {})) for q in queries}
    else:
        queries = source.dataset.split_queries(chosen)
        if max_queries:
            queries = dict(list(queries.items())[:max_queries])
        if source.retriever is None:
            return None
        hits, _, _ = first_stage_pass(source.retriever, queries, depth + 1, depth, show_progress)
        qrels = {q: dict(source.dataset.qrels[chosen].get(q, {})) for q in queries}
    if not queries:
        logger.info("%s: no queries to tune the interpolation weight on (%s)", source.name, chosen)
        return None
    run = EvalRun(
        dataset=source.dataset.name,
        split=chosen,
        queries=queries,
        qrels=qrels,
        depths=[depth],
        first_stage={q: [(h.doc_id, float(h.score)) for h in hits[q]] for q in queries},
    )
    run.rerank_scores, _, _ = rerank_pass(engine, queries, hits, show_progress)
    return run


def tuning_split(source: PairSource, split: str) -> str:
    """The split ``source``'s weight is tuned on for ``split`` (``auto``, ``heldout`` or a split name); a
    split it lacks or was trained on is an error."""
    dataset = source.dataset
    assert dataset is not None
    if split == "heldout":
        return "heldout"
    if split == "auto":
        return "dev" if "dev" in dataset.qrels and source.split != "dev" else "heldout"
    if split not in dataset.qrels:
        raise ValueError(
            f"dataset {dataset.name!r} has no {split!r} split to tune on (has {sorted(dataset.qrels)})"
        )
    if split == source.split:
        raise ValueError(
            f"{split!r} is the split {dataset.name!r} was trained on; tune on another one or 'heldout'"
        )
    return split


# --------------------------------------------------------------------------- windows or truncation
def retune(
    model_dir: str | Path,
    dataset: Dataset,
    *,
    split: str = "dev",
    first_stage: str = "hybrid",
    index: str | Path | None = None,
    depth: int = 20,
    max_queries: int | None = None,
    eval_fraction: float = 0.1,
    device: str | None = None,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Choose how the model in ``model_dir`` reads long documents and its interpolation weight, on
    ``split`` of ``dataset``, and store both in its card (the earlier tuning is kept as
    ``interpolation.previous``). Returns the card.

    Both readings (best window, truncation) score the same first-stage candidates, and each gets its weight
    from the grid and formula of :func:`tune_weight`. Windows stay unless truncation's interpolated nDCG@10
    beats them with p < :data:`ALPHA` (paired t over the tuning queries): a small lead on a few queries does
    not carry over to other queries. ``split="heldout"`` (sets without a dev split) uses the queries
    ``winnow finetune`` held apart, rebuilt from the card and checked against its count. Never a test split.
    """
    if split == "test":
        raise ValueError("never tune on a test split: use a dev split or heldout")
    card = read_card(model_dir)
    if card is None:
        raise ValueError(f"{model_dir} has no {CARD_FILE} model card; tune models trained by winnow finetune")
    training_set = None
    if split == "heldout":
        training_set = rebuild_training_set(
            card, dataset, index=index, eval_fraction=eval_fraction, depth=depth
        )
    tunings: dict[bool, WeightTuning] = {}
    for windows in (True, False):
        tunings[windows] = _tune_reading(
            model_dir,
            dataset,
            training_set,
            windows=windows,
            split=split,
            first_stage=first_stage,
            index=index,
            depth=depth,
            max_queries=max_queries,
            device=device,
            show_progress=show_progress,
        )
        logger.info("windows=%s: %s", windows, tunings[windows].to_dict())
    windows, comparison = choose_windows(tunings[True], tunings[False])
    chosen = tunings[windows]
    new = {
        **chosen.to_dict(),
        "formula": FORMULA,
        "by_windows": {str(w).lower(): t.to_dict() for w, t in tunings.items()},
        "truncation_vs_windows": comparison,
    }
    if card.get("interpolation"):
        new["previous"] = card["interpolation"]
    card["interpolation"] = new
    card["windows"] = windows
    save_card(model_dir, card)
    logger.info(
        "chose windows=%s, weight %.2f on %s (truncation %+.4f, p = %s)",
        windows,
        chosen.weight,
        new["split"],
        comparison["difference"],
        comparison["p_value"],
    )
    return card


def _tune_reading(
    model_dir: str | Path,
    dataset: Dataset,
    training_set: TrainingSet | None,
    *,
    windows: bool,
    split: str,
    first_stage: str,
    index: str | Path | None,
    depth: int,
    max_queries: int | None,
    device: str | None,
    show_progress: bool,
) -> WeightTuning:
    """The weight tuning of one reading of long documents (``windows`` or truncation) for :func:`retune`:
    on ``split`` of ``dataset``, or on the rebuilt ``training_set``'s held-apart queries when given."""
    if training_set is None:
        engine = CrossEncoderEngine(str(model_dir), device=device, windows=windows).load()
        run = run_evaluation(
            dataset,
            split,
            first_stage=first_stage,
            index=index,
            reranker=engine,
            depths=[depth],
            max_queries=max_queries,
            interpolation_weight=1.0,
            show_progress=show_progress,
        )
        tuning = tune_weight([run], depth=depth)
        tuning.info = {"split": f"{dataset.name}/{split}", "depth": depth, "first_stage": first_stage}
        return tuning
    found = tune_interpolation(
        model_dir,
        training_set,
        split="heldout",
        depth=depth,
        max_queries=max_queries,
        windows=windows,
        device=device,
        show_progress=show_progress,
    )
    assert found is not None  # a rebuilt BEIR source always has held-apart queries
    return found


def choose_windows(with_windows: WeightTuning, truncated: WeightTuning) -> tuple[bool, dict[str, Any]]:
    """Windows (True) unless truncation's tuned nDCG@10 beats them with p < :data:`ALPHA` (paired t over the
    same queries); also the comparison, as the card records it."""
    gain = truncated.best - with_windows.best
    p_value = paired_t_test(with_windows.per_query, truncated.per_query)
    windows = not (gain > 0 and p_value < ALPHA)
    return windows, {
        "difference": round(gain, 6),
        "p_value": None if math.isnan(p_value) else round(p_value, 6),  # NaN: fewer than two queries
        "rule": f"truncation only when its interpolated nDCG@10 beats windows, p < {ALPHA} (paired t)",
    }


def rebuild_training_set(
    card: dict[str, Any], dataset: Dataset, *, index: str | Path | None, eval_fraction: float, depth: int
) -> TrainingSet:
    """The training set ``winnow finetune`` built for a one-dataset model, from its card's settings, with
    ``depth`` first-stage candidates per query; its held-apart queries must match the card's count."""
    sources = card["data"]["sources"]
    if len(sources) != 1 or sources[0].get("kind") != "beir":
        raise ValueError("tuning on heldout needs a model trained on one BEIR dataset; use its dev split")
    source, seed = sources[0], card["recipe"]["seed"]
    mined = mine_beir(
        dataset,
        source["split"],
        first_stage=source["first_stage"],
        hard_negatives=source["hard_negatives"],
        skip_top=source["skip_top"],
        random_negatives=source["random_negatives"],
        candidates=depth,
        seed=seed,
        index=index,
        max_queries=source.get("max_queries"),  # absent from older cards: those trained on every query
    )
    fraction = card["data"].get("eval_fraction", eval_fraction)
    training_set = build_training_set([mined], eval_fraction=fraction, seed=seed)
    if len(training_set.eval_queries) != card["data"]["eval_queries"]:
        raise ValueError(
            f"rebuilt {len(training_set.eval_queries)} held-apart queries, the card says "
            f"{card['data']['eval_queries']}: pass the --eval-fraction the model was trained with"
        )
    return training_set
