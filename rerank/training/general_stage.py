"""The general relevance stage sized for one GPU: data, steps, time budget, zero-shot comparison, ship rule.

The pieces behind ``benchmarks/quality/gpu_train.py`` (``make gpu-train OUT=dir``):

- :func:`mine_general`: SQuAD v1.1 train questions (all 87,599 by default) with hard negatives mined by *both*
  bm25s and the dense bi-encoder, plus the QED-NQ train pairs;
- :func:`plan_training`: batch, learning rate (square-root scaled from the users' batch 16 / lr 5e-5) and the
  number of steps that fit a wall-clock budget at an assumed throughput;
- :class:`TimeBudget`: a trainer callback that stops (and checkpoints) when the budget is spent, so a run
  never outlives the machine it was lent;
- :func:`compare_zero_shot`: each shared test split over its best first stage, every model scored on the same
  candidates through ``winnow eval``'s code path (:func:`winnow.rerank.evaluation.report.evaluate`), and the
  new model compared with the shipped one query by query;
- :func:`ship_decision`: the rule for replacing the shipped model.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from winnow.rerank.training.pairs import PairSource, load_pairs_file
from winnow.retrieval.corpus import Dataset

logger = logging.getLogger(__name__)

__all__ = [
    "EVAL_SETS",
    "EvalSet",
    "SetComparison",
    "ShipDecision",
    "TimeBudget",
    "TrainingPlan",
    "compare_zero_shot",
    "mine_general",
    "plan_training",
    "ship_decision",
    "slice_dataset",
]

BASE_BATCH = 16  # the users' recipe (SEEDS.md): batch 16, lr 5e-5
BASE_LR = 5e-5
PRIMARY = "nDCG@10"


@dataclass(frozen=True)
class EvalSet:
    """A shared test split and its best first stage (``benchmarks/results/first_stages_summary.md``)."""

    name: str
    first_stage: str
    chunk_words: int | None = None  # financebench's index is chunked (winnow index --chunk-words 200)
    split: str = "test"


# The six shared sets of issue 20, each over the first stage with the best test nDCG@10 (as in
# benchmarks/quality/run_models.sh's BEST and the README's quality table).
EVAL_SETS: tuple[EvalSet, ...] = (
    EvalSet("scifact", "hybrid"),
    EvalSet("checkthat2020-task2", "dense"),
    EvalSet("arguana", "hybrid"),
    EvalSet("abt-buy", "hybrid"),
    EvalSet("tatqa", "bm25"),
    EvalSet("financebench", "dense", chunk_words=200),
)


# --------------------------------------------------------------------------- step plan
@dataclass(frozen=True)
class TrainingPlan:
    """What :func:`plan_training` settled: the step count, the learning rate and the time it should take."""

    pairs: int
    batch_size: int
    learning_rate: float
    steps: int
    epochs: float
    estimated_seconds: float
    limited_by: str  # "epochs" or "budget"
    pairs_per_second: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def scaled_learning_rate(batch_size: int, base_lr: float = BASE_LR, base_batch: int = BASE_BATCH) -> float:
    """``base_lr`` scaled by the square root of the batch ratio (Adam's rule of thumb; linear scaling from
    batch 16 to 256 would give 8e-4, too high for fine-tuning a BERT): 16 -> 5e-5, 256 -> 2e-4."""
    if batch_size < 1 or base_batch < 1 or not base_lr > 0:
        raise ValueError("batch sizes must be >= 1 and the learning rate positive")
    return base_lr * math.sqrt(batch_size / base_batch)


def plan_training(
    pairs: int,
    *,
    batch_size: int = 256,
    epochs: float = 1.0,
    budget_seconds: float = 300.0,
    pairs_per_second: float = 2000.0,
    learning_rate: float | None = None,
    max_steps: int | None = None,
) -> TrainingPlan:
    """The steps to train: ``epochs`` over ``pairs``, cut to what ``budget_seconds`` allows at
    ``pairs_per_second`` (an assumed throughput; the run measures the real one), or ``max_steps`` when given.

    :param learning_rate: None scales the users' 5e-5 at batch 16 by sqrt(batch / 16).
    """
    if pairs < 1:
        raise ValueError(f"no training pairs ({pairs})")
    if batch_size < 1 or epochs <= 0 or budget_seconds <= 0 or pairs_per_second <= 0:
        raise ValueError("batch_size, epochs, budget_seconds and pairs_per_second must be positive")
    steps_per_epoch = math.ceil(pairs / batch_size)
    wanted = max(1, math.ceil(steps_per_epoch * epochs))
    affordable = max(1, math.floor(budget_seconds * pairs_per_second / batch_size))
    if max_steps is not None:
        steps, limited_by = max(1, max_steps), "max_steps"
    elif wanted <= affordable:
        steps, limited_by = wanted, "epochs"
    else:
        steps, limited_by = affordable, "budget"
    lr = learning_rate if learning_rate is not None else scaled_learning_rate(batch_size)
    return TrainingPlan(
        pairs=pairs,
        batch_size=batch_size,
        learning_rate=lr,
        steps=steps,
        epochs=round(steps * batch_size / pairs, 4),
        estimated_seconds=round(steps * batch_size / pairs_per_second, 1),
        limited_by=limited_by,
        pairs_per_second=pairs_per_second,
    )


class TimeBudget(TrainerCallback):
    """Stop training (saving a checkpoint first) once ``seconds`` of wall-clock time have passed in this
    process; a rerun resumes from that checkpoint with a fresh budget."""

    def __init__(self, seconds: float) -> None:
        if not seconds > 0:
            raise ValueError(f"the time budget must be positive, got {seconds}")
        self.seconds = seconds
        self.started: float | None = None
        self.stopped_at_step: int | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.started = time.monotonic()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if self.started is not None and time.monotonic() - self.started >= self.seconds:
            if not control.should_training_stop:
                logger.warning(
                    "time budget of %.0f s spent at step %d of %d: saving and stopping (rerun to resume)",
                    self.seconds,
                    state.global_step,
                    state.max_steps,
                )
            self.stopped_at_step = state.global_step
            control.should_training_stop = True
            control.should_save = True
        return control


# --------------------------------------------------------------------------- data
def slice_dataset(
    dataset: Dataset, split: str, *, max_queries: int | None = None, max_docs: int | None = None
) -> Dataset:
    """``dataset`` cut to the first ``max_queries`` judged queries of ``split`` and a corpus of their judged
    documents plus the first ``max_docs`` others (smoke runs); None keeps everything."""
    qrels = dataset.qrels[split]
    queries = dataset.split_queries(split)
    if max_queries is not None:
        queries = dict(list(queries.items())[:max_queries])
    corpus = dataset.corpus
    if max_docs is not None:
        judged = {d for q in queries for d in qrels[q]}
        others = [p for p in corpus if p.id not in judged][:max_docs]
        corpus = [p for p in corpus if p.id in judged] + others
    return Dataset(
        name=dataset.name,
        corpus=list(corpus),
        queries=dict(queries),
        qrels={split: {q: dict(qrels[q]) for q in queries}},
    )


def mine_general(
    squad: Dataset,
    qed_pairs: Path | None,
    *,
    embedder: Any,
    questions: int | None = None,
    bm25_negatives: int = 2,
    dense_negatives: int = 2,
    skip_top: int = 1,
    seed: int = 42,
    device: str | None = None,
    qed_queries: int | None = None,
) -> tuple[list[PairSource], dict[str, float]]:
    """Pairs for the general stage and the seconds each part took.

    SQuAD's ``train`` questions (the first ``questions``; None = all) each get their paragraph as the
    positive and, from each of bm25s and the dense bi-encoder (``embedder``, over an index built in memory),
    the best-ranked paragraphs not judged relevant after skipping ``skip_top`` of them (same-article
    paragraphs that may hold the answer rank first). Both sources keep their candidates, so the held-apart
    questions are evaluated by nDCG@10 during training. QED-NQ train pairs (query, positive, negatives) are
    added as they are (those of the first ``qed_queries`` queries; None = all).
    """
    from winnow.rerank.training.mining import mine_beir
    from winnow.retrieval.bm25 import BM25Retriever
    from winnow.retrieval.dense import DenseRetriever
    from winnow.retrieval.indexing import build_index

    timings: dict[str, float] = {}
    started = time.perf_counter()
    bm25 = BM25Retriever(squad.corpus)
    timings["bm25_index"] = time.perf_counter() - started
    started = time.perf_counter()
    index = build_index(squad.corpus, embedder, show_progress=False)
    dense = DenseRetriever(index, embedder)
    timings["dense_index"] = time.perf_counter() - started
    sources: list[PairSource] = []
    for name, retriever, count in (("bm25", bm25, bm25_negatives), ("dense", dense, dense_negatives)):
        started = time.perf_counter()
        source = mine_beir(
            squad,
            "train",
            first_stage=retriever,
            hard_negatives=count,
            skip_top=skip_top,
            candidates=20,
            seed=seed,
            max_queries=questions,
            device=device,
            show_progress=False,
        )
        source.name = f"{source.name}+{name}"
        source.info["first_stage"] = name
        source.info["first_stage_model"] = getattr(retriever, "description", None) or getattr(
            embedder, "name", None
        )
        sources.append(source)
        timings[f"mine_{name}"] = time.perf_counter() - started
        logger.info(
            "%s: %d pairs (%d hard negatives) in %.1f s",
            source.name,
            len(source.pairs),
            source.info["hard_negative_pairs"],
            timings[f"mine_{name}"],
        )
    if qed_pairs is not None:
        qed = load_pairs_file(qed_pairs)
        if qed_queries is not None:
            kept = set(list(dict.fromkeys(p.query for p in qed.pairs))[:qed_queries])
            qed.pairs = [p for p in qed.pairs if p.query in kept]
            qed.info["max_queries"] = qed_queries
        sources.append(qed)
    return sources, {k: round(v, 2) for k, v in timings.items()}


# --------------------------------------------------------------------------- zero-shot comparison
@dataclass
class SetComparison:
    """One test split: each model's reranked nDCG@10 (as users get it: interpolated at its card's weight,
    else pure) and the candidate against the shipped model, paired over the same queries."""

    dataset: str
    first_stage: str
    queries: int
    first_stage_ndcg: float
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    candidate_vs_shipped: dict[str, Any] | None = None  # compare_paired(shipped, candidate)

    @property
    def delta(self) -> float | None:
        """Candidate minus shipped, nDCG@10."""
        return None if self.candidate_vs_shipped is None else self.candidate_vs_shipped.get("mean_difference")

    @property
    def p_value(self) -> float | None:
        return None if self.candidate_vs_shipped is None else self.candidate_vs_shipped.get("p_value")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "delta": self.delta, "p_value": self.p_value}


def _as_users_get_it(report: Mapping[str, Any]) -> tuple[str, dict[str, float]]:
    """The stage a user gets (interpolated when the report has it, else pure) and its per-query nDCG@10."""
    values = report["per_query"]["values"]
    stage = "interpolated" if report.get("interpolation") else "reranked"
    return stage, {q: float(v[stage]) for q, v in values.items()}


def _summary(report: Mapping[str, Any], path: Path) -> dict[str, Any]:
    stage, _ = _as_users_get_it(report)
    key = "significance_interpolated" if stage == "interpolated" else "significance"
    lift_key = "lift_interpolated" if stage == "interpolated" else "lift"
    significance = (report.get(key) or {}).get(PRIMARY, {})
    return {
        "stage": stage,
        "weight": (report.get("interpolation") or {}).get("weight"),
        "ndcg@10": report["metrics"][stage][PRIMARY],
        "pure_ndcg@10": report["metrics"]["reranked"][PRIMARY],
        "lift_vs_first_stage": report[lift_key][PRIMARY],
        "p_vs_first_stage": significance.get("p_value"),
        "ci95_vs_first_stage": significance.get("ci95"),
        "max_length": report["reranker"].get("max_length"),
        "windows": report["reranker"].get("windows"),
        "report": path.name,
    }


def compare_zero_shot(
    datasets_dir: Path,
    models: Mapping[str, str],
    out_dir: Path,
    *,
    candidate: str = "candidate",
    baseline: str = "shipped",
    sets: Sequence[EvalSet] = EVAL_SETS,
    embedder: Any = None,
    device: str | None = None,
    depths: Sequence[int] = (10, 20),
    max_queries: int | None = None,
    max_docs: int | None = None,
    seed: int = 0,
    n_resamples: int | None = None,
    plots: bool = True,
    max_length: int | None = None,
) -> tuple[list[SetComparison], dict[str, float]]:
    """Evaluate every model of ``models`` (name -> folder) on each set's test split over its best first
    stage, writing ``out_dir/<set>_<name>.json`` (+ ``.md``, ``.png``), and compare ``candidate`` with
    ``baseline`` per set. Each set's dense index is embedded once and shared by the models.

    :param max_queries: the first N test queries only; ``max_docs`` cuts the corpus too (smoke runs).
    :param n_resamples: permutation and bootstrap resamples (None: the reports' default).
    :param max_length: tokens per pair for every model (None: each model's own, as users get it).
    :returns: the comparisons and the seconds each set took.
    """
    from winnow.rerank.engine import CrossEncoderEngine
    from winnow.rerank.evaluation.report import build_report, write_report
    from winnow.rerank.evaluation.runs import run_evaluation
    from winnow.rerank.evaluation.statistics import DEFAULT_RESAMPLES, compare_paired
    from winnow.retrieval.corpus import load_beir
    from winnow.retrieval.embedder import Embedder
    from winnow.retrieval.first_stage import build_first_stage
    from winnow.retrieval.indexing import build_index

    if not models:
        raise ValueError("no models to evaluate")
    resamples = n_resamples or DEFAULT_RESAMPLES
    out_dir.mkdir(parents=True, exist_ok=True)
    engines = {
        name: CrossEncoderEngine(path, device=device, max_length=max_length).load()
        for name, path in models.items()
    }
    emb = embedder
    if not isinstance(emb, Embedder):
        emb = Embedder(embedder, device=device, show_progress=False)
    comparisons: list[SetComparison] = []
    timings: dict[str, float] = {}
    for spec in sets:
        started = time.perf_counter()
        dataset = load_beir(datasets_dir / spec.name)
        if max_queries is not None or max_docs is not None:
            dataset = slice_dataset(dataset, spec.split, max_queries=max_queries, max_docs=max_docs)
        index = None
        if spec.first_stage != "bm25":
            index = build_index(dataset.corpus, emb, chunk_words=spec.chunk_words, show_progress=False)
        # one first stage per set, built as `winnow eval` builds it (report's first-stage record included)
        retriever, fs_info = build_first_stage(
            spec.first_stage,
            dataset,
            index=index,
            embedder=emb if index is not None else None,
            device=device,
            show_progress=False,
        )
        reports: dict[str, dict[str, Any]] = {}
        comparison: SetComparison | None = None
        for name, engine in engines.items():
            path = out_dir / f"{spec.name}_{name}.json"
            run = run_evaluation(
                dataset,
                spec.split,
                first_stage=retriever,
                reranker=engine,
                depths=list(depths),
                max_queries=max_queries,
                show_progress=False,
            )
            run.first_stage_info = fs_info
            report = build_report(run, seed=seed, n_resamples=resamples)
            report["files"] = {"json": path.name, "markdown": path.with_suffix(".md").name}
            write_report(report, path, plot=plots)
            reports[name] = report
            if comparison is None:
                comparison = SetComparison(
                    dataset=spec.name,
                    first_stage=spec.first_stage,
                    queries=report["queries"],
                    first_stage_ndcg=report["metrics"]["first_stage"][PRIMARY],
                )
            comparison.models[name] = _summary(report, path)
        assert comparison is not None  # models is not empty
        if candidate in reports and baseline in reports:
            _, new = _as_users_get_it(reports[candidate])
            _, old = _as_users_get_it(reports[baseline])
            qids = list(old)
            comparison.candidate_vs_shipped = compare_paired(
                [old[q] for q in qids], [new[q] for q in qids], seed=seed, n_resamples=resamples
            )
        timings[spec.name] = round(time.perf_counter() - started, 2)
        logger.info(
            "%s (%d queries, %s): %s; candidate - shipped %s in %.1f s",
            spec.name,
            comparison.queries,
            spec.first_stage,
            ", ".join(f"{n} {m['ndcg@10']:.4f}" for n, m in comparison.models.items()),
            "n/a" if comparison.delta is None else f"{comparison.delta:+.4f} (p {comparison.p_value})",
            timings[spec.name],
        )
        comparisons.append(comparison)
    return comparisons, timings


# --------------------------------------------------------------------------- the rule
@dataclass(frozen=True)
class ShipDecision:
    """Whether a new general model replaces the shipped one, and why."""

    ship: bool
    mean_delta: float | None
    significant_losses: list[str]
    missing: list[str]
    reasons: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def ship_decision(
    comparisons: Iterable[SetComparison],
    *,
    alpha: float = 0.05,
    required: Sequence[str] = tuple(s.name for s in EVAL_SETS),
    complete: bool = True,
) -> ShipDecision:
    """Ship only when the candidate beats the shipped model zero-shot (mean nDCG@10 change over the sets,
    each set weighing the same, > 0) **and** loses significantly on none (change < 0 with paired-t
    p < ``alpha``), measured on every ``required`` set's whole test split (``complete=False``, e.g. a smoke
    run on a few queries, never ships)."""
    by_set = {c.dataset: c for c in comparisons}
    missing = [name for name in required if name not in by_set or by_set[name].delta is None]
    deltas = [c.delta for c in by_set.values() if c.delta is not None]
    mean_delta = sum(deltas) / len(deltas) if deltas else None
    losses = [
        name
        for name, c in by_set.items()
        if c.delta is not None and c.delta < 0 and c.p_value is not None and c.p_value < alpha
    ]
    reasons = []
    if not complete:
        reasons.append("not a complete measurement (a slice of the test splits): never ships")
    if missing:
        reasons.append(f"no comparison on {', '.join(missing)}")
    if mean_delta is None or mean_delta <= 0:
        shown = "n/a" if mean_delta is None else f"{mean_delta:+.4f}"
        reasons.append(f"does not beat the shipped model on average (mean nDCG@10 change {shown})")
    if losses:
        reasons.append(f"significant loss (p < {alpha}) against the shipped model on {', '.join(losses)}")
    ship = not reasons
    if ship:
        reasons.append(
            f"beats the shipped model (mean nDCG@10 change {mean_delta:+.4f}); no significant loss"
        )
    return ShipDecision(
        ship=ship,
        mean_delta=None if mean_delta is None else round(mean_delta, 6),
        significant_losses=losses,
        missing=missing,
        reasons=reasons,
    )
