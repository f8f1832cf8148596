"""Training pairs mined from a BEIR split: positives from its qrels, hard negatives from a first stage.

For each judged query the first stage retrieves its top documents; those not judged relevant are candidate
negatives, of which the first ``skip_top`` are skipped (the likeliest unjudged positives) and the next
``hard_negatives`` kept; ``random_negatives`` more are drawn (seeded) from the rest of the corpus.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from winnow.rerank.training.pairs import PairSource, TrainingPair
from winnow.retrieval.corpus import Dataset, load_beir
from winnow.retrieval.first_stage import build_first_stage
from winnow.retrieval.hit import Hit, Retriever

logger = logging.getLogger(__name__)

__all__ = ["mine_beir", "resolve_train_split"]


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
    settings = {"hard_negatives": hard_negatives, "skip_top": skip_top, "random_negatives": random_negatives}
    _check_counts(**settings)
    if candidates <= 0:
        raise ValueError(f"candidates must be positive, got {candidates}")
    show_progress = logger.getEffectiveLevel() <= logging.INFO if show_progress is None else show_progress
    dataset = dataset if isinstance(dataset, Dataset) else load_beir(dataset)
    used_split = resolve_train_split(dataset, split)
    qrels = dataset.qrels[used_split]
    queries = _judged_queries(dataset, used_split, max_queries)
    # one fetch deep enough for the candidates and the negatives (positives and the self-hit take room too)
    most_positives = max(sum(g > 0 for g in qrels[q].values()) for q in queries)
    depth = max(candidates, skip_top + hard_negatives + most_positives) + 1
    if isinstance(first_stage, str):
        retriever, fs_info = build_first_stage(
            first_stage, dataset, index=index, embedder=embedder, device=device, show_progress=show_progress
        )
    else:
        retriever, fs_info = first_stage, {"name": getattr(first_stage, "name", type(first_stage).__name__)}
    qids = list(queries)
    logger.info(
        "mining negatives for %d %s queries of %s with %s",
        len(qids),
        used_split,
        dataset.name,
        fs_info["name"],
    )
    hits = _retrieve(retriever, [queries[q] for q in qids], depth, show_progress)
    picker = _PairPicker(dataset, f"{dataset.name}/{used_split}", **settings, seed=seed)
    kept: dict[str, list[Hit]] = {}
    for qid, row in zip(qids, hits, strict=True):
        row = _unique_docs([h for h in row if h.doc_id != qid])
        kept[qid] = row[:candidates]
        picker.add(qid, queries[qid], {d for d, g in qrels[qid].items() if g > 0}, row)
    info = {
        "dataset": dataset.name,
        "split": used_split,
        "first_stage": fs_info.get("name"),
        "first_stage_model": fs_info.get("model"),
        **settings,
        "max_queries": max_queries,
        "hard_negative_pairs": picker.hard,
        "random_negative_pairs": picker.random,
    }
    return PairSource(
        name=picker.name,
        kind="beir",
        pairs=picker.pairs,
        info=info,
        dataset=dataset,
        split=used_split,
        queries=queries,
        qrels={q: dict(qrels[q]) for q in qids},
        candidates=kept,
        retriever=retriever,
    )


def _check_counts(**counts: int) -> None:
    for name, value in counts.items():
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")


def _judged_queries(dataset: Dataset, split: str, max_queries: int | None) -> dict[str, str]:
    """The split's queries with at least one relevant document (the first ``max_queries``)."""
    qrels = dataset.qrels[split]
    queries = {q: t for q, t in dataset.split_queries(split).items() if any(g > 0 for g in qrels[q].values())}
    if max_queries is not None:
        queries = dict(list(queries.items())[:max_queries])
    if not queries:
        raise ValueError(f"split {split!r} of {dataset.name!r} has no query with a relevant document")
    return queries


class _PairPicker:
    """Turns each query's judgements and first-stage hits into labelled pairs, counting what it took."""

    def __init__(
        self,
        dataset: Dataset,
        name: str,
        hard_negatives: int,
        skip_top: int,
        random_negatives: int,
        seed: int,
    ) -> None:
        self.by_id = {p.id: p for p in dataset.corpus}
        self.all_ids = sorted(self.by_id)
        self.name = name
        self.hard_negatives, self.skip_top, self.random_negatives = hard_negatives, skip_top, random_negatives
        self.rng = random.Random(seed)
        self.pairs: list[TrainingPair] = []
        self.hard = self.random = 0

    def add(self, qid: str, text: str, relevant: set[str], hits: Sequence[Hit]) -> None:
        """Positives from ``relevant``; hard negatives from ``hits`` (after ``skip_top``); random ones."""
        by_id = self.by_id
        for doc in sorted(relevant):
            if doc in by_id:
                self.pairs.append(TrainingPair(text, by_id[doc].full_text(), 1.0, self.name))
        non_relevant = [h.doc_id for h in hits if h.doc_id not in relevant and h.doc_id in by_id]
        chosen = non_relevant[self.skip_top : self.skip_top + self.hard_negatives]
        self.pairs.extend(TrainingPair(text, by_id[doc].full_text(), 0.0, self.name) for doc in chosen)
        self.hard += len(chosen)
        if self.random_negatives:
            taken = relevant | set(chosen) | {qid}
            drawn = _draw(self.rng, self.all_ids, taken, self.random_negatives)
            self.pairs.extend(TrainingPair(text, by_id[d].full_text(), 0.0, self.name) for d in drawn)
            self.random += len(drawn)


def _retrieve(retriever: Retriever, texts: list[str], depth: int, show_progress: bool) -> list[list[Hit]]:
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
