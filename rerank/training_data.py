"""Training data for a cross-encoder: (query, document, label) pairs from BEIR splits and pairs files.

Sources, which can be mixed in one training set:

- a BEIR split (:func:`mine_beir`): positives from the qrels (grade > 0 -> label 1.0) and hard negatives mined
  with a first stage (dense, BM25 or hybrid): the top-ranked documents not judged relevant, after skipping the
  first ``skip_top`` of them (likely unjudged relevant documents), plus optional random negatives (seeded);
- a pairs file (:func:`load_pairs_file`): ``.jsonl``/``.csv``/``.tsv`` with ``query``, ``document`` (or
  ``passage``) and ``label`` columns, or ``.jsonl`` lines ``{"query", "positive", "negatives": [...]}``.

:func:`build_training_set` merges sources, drops any negative that is a positive of the same query, warns
when the set is tiny, and holds apart a seeded fraction of the *queries* (never of a test split) for
evaluation during training.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrieval.corpus import Dataset, load_beir
from retrieval.hit import Hit, Retriever

logger = logging.getLogger(__name__)

__all__ = [
    "MIN_PAIRS_WARNING",
    "PairSource",
    "TrainingPair",
    "TrainingSet",
    "build_training_set",
    "load_pairs_file",
    "mine_beir",
    "resolve_train_split",
]

# Fewer training pairs than this gets a warning: such a run cannot teach a cross-encoder much.
MIN_PAIRS_WARNING = 300
PAIR_SUFFIXES = (".jsonl", ".csv", ".tsv")
_DOCUMENT_COLUMNS = ("document", "passage", "text")


@dataclass(frozen=True)
class TrainingPair:
    """One training example: a query, a document text and a label in [0, 1] (1 = relevant)."""

    query: str
    document: str
    label: float
    source: str = ""


@dataclass
class PairSource:
    """The pairs one source contributed, and what the evaluation and weight tuning need from it.

    ``candidates`` (BEIR sources only) holds each query's first-stage hits, best first, which the reranking
    evaluator reorders; ``queries``/``qrels`` map query ids to text and judgements; ``retriever`` is the first
    stage that mined them, kept so a dev split can be searched with the same one.
    """

    name: str
    kind: str  # "beir" or "pairs"
    pairs: list[TrainingPair]
    info: dict[str, Any] = field(default_factory=dict)
    dataset: Dataset | None = None
    split: str | None = None
    queries: dict[str, str] = field(default_factory=dict)
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)
    candidates: dict[str, list[Hit]] = field(default_factory=dict)
    retriever: Retriever | None = None

    def summary(self) -> dict[str, Any]:
        """Sizes and settings, for logs and the model card."""
        return {
            "name": self.name,
            "kind": self.kind,
            "pairs": len(self.pairs),
            "positives": sum(1 for p in self.pairs if p.label > 0),
            "queries": len({p.query for p in self.pairs}),
            **self.info,
        }


@dataclass
class TrainingSet:
    """Merged training pairs, the held-apart evaluation pairs, and the sources they came from."""

    train: list[TrainingPair]
    eval: list[TrainingPair]
    sources: list[PairSource]
    eval_queries: set[str] = field(default_factory=set)  # query texts held apart
    dropped_negatives: int = 0
    duplicates: int = 0
    seed: int = 42
    eval_fraction: float = 0.1

    def summary(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "eval_fraction": self.eval_fraction,
            "train_pairs": len(self.train),
            "train_positives": sum(1 for p in self.train if p.label > 0),
            "train_queries": len({p.query for p in self.train}),
            "eval_pairs": len(self.eval),
            "eval_queries": len(self.eval_queries),
            "dropped_negatives_that_were_positives": self.dropped_negatives,
            "duplicates_dropped": self.duplicates,
            "sources": [s.summary() for s in self.sources],
        }

    def reranking_samples(self, depth: int | None = None) -> list[dict[str, Any]]:
        """Samples for sentence-transformers' ``CrossEncoderRerankingEvaluator`` over the held-apart queries.

        A BEIR query brings its first-stage candidates in rank order (``documents``, the top ``depth``; None =
        all mined), so the evaluator also reports the first stage's figures; a pairs-file query brings its
        labelled documents.
        """
        samples: list[dict[str, Any]] = []
        seen: set[str] = set()
        for source in self.sources:
            if source.kind != "beir":
                continue
            by_id = {p.id: p for p in source.dataset.corpus} if source.dataset else {}
            for qid, hits in source.candidates.items():
                text = source.queries[qid]
                if text not in self.eval_queries or text in seen:
                    continue
                positives = [
                    by_id[d].full_text() for d, g in source.qrels.get(qid, {}).items() if g > 0 and d in by_id
                ]
                if not positives or len(hits[:depth]) < 2:  # nDCG needs two documents to order
                    continue
                seen.add(text)
                documents = [h.full_text() for h in hits[:depth]]
                samples.append({"query": text, "positive": positives, "documents": documents})
        grouped: dict[str, dict[str, list[str]]] = {}
        for pair in self.eval:
            if pair.query in seen:
                continue
            entry = grouped.setdefault(pair.query, {"positive": [], "negative": []})
            entry["positive" if pair.label >= 0.5 else "negative"].append(pair.document)
        for query, entry in grouped.items():
            if entry["positive"] and entry["negative"]:
                samples.append({"query": query, **entry})
        return samples


# --------------------------------------------------------------------------- labels
def check_label(value: Any, where: str) -> float:
    """``value`` as a float label in [0, 1]; anything else is a ValueError naming ``where``."""
    try:
        label = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: label {value!r} is not a number; labels must be in [0, 1]") from None
    if math.isnan(label) or not 0.0 <= label <= 1.0:
        raise ValueError(
            f"{where}: label {value!r} is outside [0, 1]. Binary cross-entropy needs labels in [0, 1] "
            "(1 = relevant, 0 = not); rescale labels such as -1..1 with (label + 1) / 2 or map them to 0/1"
        )
    return label


# --------------------------------------------------------------------------- pairs files
def load_pairs_file(path: str | Path) -> PairSource:
    """Read a pairs file: ``.jsonl``, ``.csv`` or ``.tsv`` (see the module docstring for the columns).

    :raises ValueError: for a label outside [0, 1], a missing column, or an unsupported suffix; the message
        names the file and line.
    :raises FileNotFoundError: when the file does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pairs file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in PAIR_SUFFIXES:
        raise ValueError(f"{path}: a pairs file must be .jsonl, .csv or .tsv, got {suffix or 'no suffix'!r}")
    name = path.name
    pairs = list(_jsonl_pairs(path, name) if suffix == ".jsonl" else _table_pairs(path, name, suffix))
    if not pairs:
        raise ValueError(f"{path}: no pairs found")
    logger.info("%s: %d pairs (%d positive)", path, len(pairs), sum(p.label > 0 for p in pairs))
    return PairSource(name=name, kind="pairs", pairs=pairs, info={"path": str(path)})


def _jsonl_pairs(path: Path, name: str) -> Iterable[TrainingPair]:
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_no}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{where}: not valid JSON ({err.msg})") from err
            if not isinstance(record, dict):
                raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
            query = _text(record.get("query"), "query", where)
            if "positive" in record or "negatives" in record:
                positives = record.get("positive", [])
                positives = [positives] if isinstance(positives, str) else list(positives or [])
                negatives = record.get("negatives", record.get("negative", []))
                negatives = [negatives] if isinstance(negatives, str) else list(negatives or [])
                for doc in positives:
                    yield TrainingPair(query, _text(doc, "positive", where), 1.0, name)
                for doc in negatives:
                    yield TrainingPair(query, _text(doc, "negatives[]", where), 0.0, name)
                continue
            doc = _document(record, where)
            if "label" not in record:
                raise ValueError(f"{where}: needs 'label' (or 'positive'/'negatives' lists)")
            yield TrainingPair(query, doc, check_label(record["label"], where), name)


def _table_pairs(path: Path, name: str, suffix: str) -> Iterable[TrainingPair]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t" if suffix == ".tsv" else ",")
        columns = set(reader.fieldnames or [])
        doc_column = next((c for c in _DOCUMENT_COLUMNS if c in columns), None)
        if "query" not in columns or doc_column is None or "label" not in columns:
            raise ValueError(
                f"{path}: the header must name the columns query, document (or passage) and label; "
                f"found {sorted(columns)}"
            )
        for line_no, row in enumerate(reader, start=2):
            where = f"{path}:{line_no}"
            query = _text(row.get("query"), "query", where)
            doc = _text(row.get(doc_column), doc_column, where)
            yield TrainingPair(query, doc, check_label(row.get("label"), where), name)


def _document(record: dict[str, Any], where: str) -> str:
    for column in _DOCUMENT_COLUMNS:
        if column in record:
            return _text(record[column], column, where)
    raise ValueError(f"{where}: needs a 'document' (or 'passage') field")


def _text(value: Any, column: str, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: {column!r} must be a non-empty string, got {value!r:.60}")
    return value


# --------------------------------------------------------------------------- BEIR mining
def resolve_train_split(dataset: Dataset, split: str = "train") -> str:
    """The split to train on: ``split`` when it has qrels; ``train`` falls back to ``dev`` (logged).

    A split named ``test`` is allowed only when asked for by name, with a warning: its figures are then no
    longer a fair test.
    """
    if split in dataset.qrels:
        if split == "test":
            logger.warning(
                "training on the 'test' split of %s: do not report figures measured on that split",
                dataset.name,
            )
        return split
    if split == "train" and "dev" in dataset.qrels:
        logger.info("%s has no train qrels; training on its dev split instead", dataset.name)
        return "dev"
    raise ValueError(
        f"dataset {dataset.name!r} has no {split!r} qrels (available: {sorted(dataset.qrels) or 'none'}); "
        "pass the split to train on with --split"
    )


def mine_beir(
    dataset: Dataset | str | Path,
    split: str = "train",
    *,
    first_stage: str | Retriever = "bm25",
    hard_negatives: int = 4,
    skip_top: int = 2,
    random_negatives: int = 0,
    candidates: int = 30,
    seed: int = 42,
    index: Any = None,
    embedder: Any = None,
    device: str | None = None,
    max_queries: int | None = None,
    show_progress: bool | None = None,
) -> PairSource:
    """Positives from ``split``'s qrels and negatives mined with ``first_stage``.

    For each judged query the first stage retrieves its top documents; those not judged relevant (grade >
    0) are candidate negatives, of which the first ``skip_top`` are skipped (the likeliest unjudged
    positives) and the next ``hard_negatives`` kept. ``random_negatives`` more are drawn (seeded) from the
    rest of the corpus.
    A query's own document (same id, arguana-style) is never used.

    :param first_stage: ``"dense"``, ``"bm25"``, ``"hybrid"`` or a retriever object.
    :param candidates: first-stage hits kept per query for the reranking evaluation (nDCG@10).
    """
    from rerank.evaluation import build_first_stage

    for name, value in (
        ("hard_negatives", hard_negatives),
        ("skip_top", skip_top),
        ("random_negatives", random_negatives),
    ):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    if candidates <= 0:
        raise ValueError(f"candidates must be positive, got {candidates}")
    if show_progress is None:
        show_progress = logger.getEffectiveLevel() <= logging.INFO
    if not isinstance(dataset, Dataset):
        dataset = load_beir(dataset)
    used_split = resolve_train_split(dataset, split)
    qrels = dataset.qrels[used_split]
    queries = dataset.split_queries(used_split)
    queries = {q: t for q, t in queries.items() if any(g > 0 for g in qrels[q].values())}
    if max_queries is not None:
        queries = dict(list(queries.items())[:max_queries])
    if not queries:
        raise ValueError(f"split {used_split!r} of {dataset.name!r} has no query with a relevant document")
    by_id = {p.id: p for p in dataset.corpus}
    # one fetch deep enough for the candidates and the negatives (positives and the self-hit take room too)
    most_positives = max(sum(g > 0 for g in qrels[q].values()) for q in queries)
    depth = max(candidates, skip_top + hard_negatives + most_positives) + 1
    if isinstance(first_stage, str):
        retriever, fs_info = build_first_stage(
            first_stage,
            dataset,
            index=index,
            embedder=embedder,
            device=device,  # a hybrid fuses its retrievers' top 100 (more when deeper), as `winnow eval`
            show_progress=show_progress,
        )
    else:
        retriever, fs_info = first_stage, {"name": getattr(first_stage, "name", type(first_stage).__name__)}
    qids = list(queries)
    logger.info(
        "mining negatives for %d %s queries of %s with %s",
        len(qids),
        used_split,
        dataset.name,
        fs_info.get("name"),
    )
    hits = _retrieve(retriever, [queries[q] for q in qids], depth, show_progress)
    rng = random.Random(seed)
    all_ids = sorted(by_id)
    pairs: list[TrainingPair] = []
    kept: dict[str, list[Hit]] = {}
    name = f"{dataset.name}/{used_split}"
    n_hard = n_random = 0
    for qid, row in zip(qids, hits, strict=True):
        text = queries[qid]
        relevant = {d for d, g in qrels[qid].items() if g > 0}
        row = _unique_docs([h for h in row if h.doc_id != qid])
        kept[qid] = row[:candidates]
        for doc in sorted(relevant):
            if doc in by_id:
                pairs.append(TrainingPair(text, by_id[doc].full_text(), 1.0, name))
        non_relevant = [h.doc_id for h in row if h.doc_id not in relevant and h.doc_id in by_id]
        chosen = non_relevant[skip_top : skip_top + hard_negatives]
        for doc in chosen:
            pairs.append(TrainingPair(text, by_id[doc].full_text(), 0.0, name))
        n_hard += len(chosen)
        if random_negatives:
            taken = relevant | set(chosen) | {qid}
            drawn = _draw(rng, all_ids, taken, random_negatives)
            pairs.extend(TrainingPair(text, by_id[d].full_text(), 0.0, name) for d in drawn)
            n_random += len(drawn)
    info = {
        "dataset": dataset.name,
        "split": used_split,
        "first_stage": fs_info.get("name"),
        "first_stage_model": fs_info.get("model"),
        "hard_negatives": hard_negatives,
        "skip_top": skip_top,
        "random_negatives": random_negatives,
        "max_queries": max_queries,
        "hard_negative_pairs": n_hard,
        "random_negative_pairs": n_random,
    }
    return PairSource(
        name=name,
        kind="beir",
        pairs=pairs,
        info=info,
        dataset=dataset,
        split=used_split,
        queries=queries,
        qrels={q: dict(qrels[q]) for q in qids},
        candidates=kept,
        retriever=retriever,
    )


def _retrieve(retriever: Retriever, texts: list[str], depth: int, show_progress: bool) -> list[list[Hit]]:
    from tqdm.auto import tqdm

    out: list[list[Hit]] = []
    step = 64
    bar = tqdm(total=len(texts), desc="mining negatives", unit="query", disable=not show_progress)
    for start in range(0, len(texts), step):
        batch = texts[start : start + step]
        out.extend(retriever.retrieve_batch(batch, top_k=depth))
        bar.update(len(batch))
    bar.close()
    return out


def _unique_docs(hits: Sequence[Hit]) -> list[Hit]:
    seen: set[str] = set()
    out = []
    for hit in hits:
        if hit.doc_id not in seen:
            seen.add(hit.doc_id)
            out.append(hit)
    return out


def _draw(rng: random.Random, ids: list[str], taken: set[str], count: int) -> list[str]:
    """Up to ``count`` distinct ids not in ``taken``, seeded."""
    available = len(ids) - len(taken & set(ids))
    count = min(count, max(0, available))
    drawn: list[str] = []
    picked: set[str] = set()
    while len(drawn) < count:
        doc = ids[rng.randrange(len(ids))]
        if doc not in taken and doc not in picked:
            picked.add(doc)
            drawn.append(doc)
    return drawn


# --------------------------------------------------------------------------- merging
def build_training_set(
    sources: Sequence[PairSource],
    *,
    eval_fraction: float = 0.1,
    seed: int = 42,
    min_pairs: int = MIN_PAIRS_WARNING,
) -> TrainingSet:
    """Merge ``sources``, clean them, and hold apart ``eval_fraction`` of the queries (seeded) for evaluation.

    A (query, document) pair labelled 0 that is labelled positive anywhere else for the same query text is
    dropped (negatives never include positives), exact duplicates are dropped, and a set of fewer than
    ``min_pairs`` pairs gets a warning naming its size. A query's pairs all go to the same side of the split.
    """
    if not sources:
        raise ValueError("no training data: give at least one BEIR dataset or pairs file")
    if not 0.0 <= eval_fraction < 1.0:
        raise ValueError(f"eval_fraction must be in [0, 1), got {eval_fraction}")
    positives: set[tuple[str, str]] = set()
    for source in sources:
        positives.update((p.query, p.document) for p in source.pairs if p.label > 0)
    merged: list[TrainingPair] = []
    seen: set[tuple[str, str, float]] = set()
    dropped = duplicates = 0
    for source in sources:
        for pair in source.pairs:
            key = (pair.query, pair.document)
            if pair.label == 0.0 and key in positives:
                dropped += 1
                continue
            if (*key, pair.label) in seen:
                duplicates += 1
                continue
            seen.add((*key, pair.label))
            merged.append(pair)
    if dropped:
        logger.warning("dropped %d negatives that are positives of the same query", dropped)
    if duplicates:
        logger.info("dropped %d duplicate pairs", duplicates)
    if not merged:
        raise ValueError("no training pairs left after cleaning")
    queries = sorted({p.query for p in merged})
    random.Random(seed).shuffle(queries)
    n_eval = round(eval_fraction * len(queries))
    if eval_fraction > 0 and n_eval == 0 and len(queries) >= 2:
        n_eval = 1
    n_eval = min(n_eval, len(queries) - 1)
    held = set(queries[:n_eval])
    train = [p for p in merged if p.query not in held]
    evaluation = [p for p in merged if p.query in held]
    if len(train) < min_pairs:
        logger.warning(
            "only %d training pairs (fewer than %d): a set this small cannot teach a cross-encoder much; "
            "add data (more queries, --hard-negatives, --random-negatives) or expect little change",
            len(train),
            min_pairs,
        )
    logger.info(
        "training set: %d pairs (%d positive) over %d queries; %d pairs over %d queries held apart",
        len(train),
        sum(p.label > 0 for p in train),
        len(queries) - n_eval,
        len(evaluation),
        n_eval,
    )
    return TrainingSet(
        train=train,
        eval=evaluation,
        sources=list(sources),
        eval_queries=held,
        dropped_negatives=dropped,
        duplicates=duplicates,
        seed=seed,
        eval_fraction=eval_fraction,
    )
