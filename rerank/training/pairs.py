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
import hashlib
import json
import logging
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from winnow.retrieval.corpus import Dataset
from winnow.retrieval.hit import Hit, Retriever

logger = logging.getLogger(__name__)

__all__ = [
    "MIN_PAIRS_WARNING",
    "PairSource",
    "TrainingPair",
    "TrainingSet",
    "build_training_set",
    "check_label",
    "load_pairs_file",
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
    digest = hashlib.sha256(path.read_bytes()).hexdigest()  # the card names the file by content, not location
    return PairSource(name=name, kind="pairs", pairs=pairs, info={"sha256": digest})


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
