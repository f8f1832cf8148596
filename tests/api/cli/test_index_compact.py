"""``winnow index --compact INDEX_DIR``: fold the vector changes its writes listed into a new snapshot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from winnow.api.cli import main
from winnow.indexes import DocumentRecord, WinnowIndex, read_manifest


def test_compact_folds_the_changes_into_the_snapshot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "idx"
    index = WinnowIndex.create(4, embedder="tiny")
    x = np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32)
    index.add_records([DocumentRecord(f"d{i}", f"text {i}") for i in range(6)], x)
    index.save(path)
    live = WinnowIndex.load(path)
    live.delete_ids(["d0", "d1"])
    live.table.close()
    snapshot = (path / "vectors.faiss").stat().st_ino

    assert main(["index", "--compact", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["changes_compacted"], report["vectors"], report["documents"]) == (2, 4, 4)
    assert (path / "vectors.faiss").stat().st_ino != snapshot and read_manifest(path).count == 4
    assert WinnowIndex.load(path).pending_changes() == 0
    assert main(["index", "--verify", str(path)]) == 0


def test_compact_takes_no_corpus(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["index", "--compact", "idx", "--out", "other"])
    assert "--compact takes an existing index" in capsys.readouterr().err
