"""Small BEIR data and first stages shared by the training tests."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

from tests.conftest import write_tiny_beir
from winnow.retrieval.hit import Hit


def beir_with_train(root: Path) -> Path:
    """The tiny BEIR folder with its qrels also as a ``train`` split."""
    path = write_tiny_beir(root)
    shutil.copy(path / "qrels" / "test.tsv", path / "qrels" / "train.tsv")
    return path


def positives_by_query(dataset, split: str) -> dict[str, set[str]]:
    by_id = {p.id: p.full_text() for p in dataset.corpus}
    queries = dataset.queries
    out: dict[str, set[str]] = {}
    for qid, judged in dataset.qrels[split].items():
        out.setdefault(queries[qid], set()).update(by_id[d] for d, g in judged.items() if g > 0)
    return out


class FixedOrder:
    """A first stage that ranks the whole corpus in one fixed (shuffled) order for every query."""

    name = "fixed"

    def __init__(self, dataset):
        self.order = sorted(p.id for p in dataset.corpus)
        random.Random(0).shuffle(self.order)
        by_id = {p.id: p for p in dataset.corpus}
        self._hits = [
            Hit(id=d, text=by_id[d].text, title=by_id[d].title, score=float(len(self.order) - r))
            for r, d in enumerate(self.order)
        ]

    def retrieve_batch(self, queries, top_k=10):
        return [list(self._hits[:top_k]) for _ in queries]
