"""The BM25 saved with an index that is written in place: stale once the live table is written (by any
process), rebuilt then, and saved current again by a compaction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from winnow.indexes import DocumentRecord, WinnowIndex, read_manifest
from winnow.retrieval.bm25_index import BM25_FOLDER, bm25_for_index, keep_bm25

TEXTS = {
    "rev": "Net revenue increased 12 percent to 4.1 billion dollars in fiscal 2023.",
    "debt": "Long-term debt covenants require a leverage ratio below 3.5.",
    "gas": "The city council banned gas stoves in newly constructed homes starting 2025.",
}


@pytest.fixture()
def saved(tmp_path: Path) -> Path:
    index = WinnowIndex.create(4, embedder="tiny")
    x = np.random.default_rng(0).standard_normal((len(TEXTS), 4)).astype(np.float32)
    index.add_records([DocumentRecord(i, t) for i, t in TEXTS.items()], x)
    keep_bm25(index).save(tmp_path / "idx")
    return tmp_path / "idx"


def test_a_write_by_another_opener_makes_the_saved_bm25_stale(saved: Path, bm25_builds: list[int]) -> None:
    assert [h.id for h in bm25_for_index(WinnowIndex.load(saved)).retrieve("gas stoves", 1)] == ["gas"]
    assert bm25_builds == []  # loaded, not built

    writer = WinnowIndex.load(saved)
    writer.add_records([DocumentRecord("zorb", "the zorblaxitude of dividends")])  # a row, in place
    reader = WinnowIndex.load(saved, read_only=True)
    assert reader.on_disk() is None
    assert [h.id for h in bm25_for_index(reader).retrieve("zorblaxitude", 1)] == ["zorb"]
    assert bm25_builds == [4]  # rebuilt: the saved one predates the write

    writer.compact()  # writes a current BM25 with the new snapshot
    assert BM25_FOLDER in (read_manifest(saved).attachments or {})
    bm25_builds.clear()
    fresh = WinnowIndex.load(saved, read_only=True)
    assert [h.id for h in bm25_for_index(fresh).retrieve("zorblaxitude", 1)] == ["zorb"] and bm25_builds == []
