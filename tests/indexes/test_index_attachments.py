"""Attachments: derived data an upper layer saves in a subfolder of the index, under the same atomic swap."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from winnow.indexes import DocumentRecord, DocumentTable, WinnowIndex, index_dir, read_manifest, verify_index
from winnow.indexes.index_dir import attachment_files, attachment_state, register_attachment

NAME = "test-extra"


def _writer(index: WinnowIndex, table: DocumentTable, generation: int, folder: Path) -> dict:
    ids = [r.id for r in table.iter_records(with_embedding=False)]
    (folder / "ids.json").write_text(json.dumps(ids), encoding="utf-8")
    return {"rows": len(ids), "generation": generation}


@pytest.fixture()
def registered() -> Iterator[None]:
    register_attachment(NAME, _writer)
    yield
    index_dir._ATTACHMENT_WRITERS.pop(NAME, None)


def _index(n: int) -> WinnowIndex:
    index = WinnowIndex.create(4, embedder="tiny")
    x = np.random.default_rng(0).standard_normal((n, 4)).astype(np.float32)
    index.add_records([DocumentRecord(f"d{i}", f"text {i}") for i in range(n)], x)
    return index


def test_only_indexes_that_keep_it_save_it(tmp_path: Path, registered: None) -> None:
    _index(3).save(tmp_path / "plain")
    assert not (tmp_path / "plain" / NAME).exists() and read_manifest(tmp_path / "plain").attachments is None

    index = _index(3)
    index.keep_attachment(NAME)
    index.save(tmp_path / "idx")
    manifest = read_manifest(tmp_path / "idx")
    assert attachment_files(manifest, NAME) == [f"{NAME}/ids.json"]
    assert f"{NAME}/ids.json" in manifest.file_stats
    assert attachment_state(tmp_path / "idx", manifest, NAME) == {"rows": 3, "generation": 1}
    loaded = WinnowIndex.load(tmp_path / "idx")
    assert NAME in loaded.attachments and loaded.on_disk() is not None
    loaded.upsert_records([DocumentRecord("new", "x")], np.ones((1, 4), np.float32))
    assert loaded.on_disk() is None  # written since its load: the saved attachment no longer describes it


def test_a_stale_or_damaged_attachment_has_no_state(tmp_path: Path, registered: None) -> None:
    index = _index(3)
    index.keep_attachment(NAME)
    index.save(tmp_path / "idx")
    manifest = read_manifest(tmp_path / "idx")
    manifest.attachments[NAME]["table"]["documents"] = 2  # built from another table
    assert attachment_state(tmp_path / "idx", manifest, NAME) is None

    (tmp_path / "idx" / NAME / "ids.json").write_text("[]", encoding="utf-8")
    assert attachment_state(tmp_path / "idx", read_manifest(tmp_path / "idx"), NAME) is None
    result = verify_index(tmp_path / "idx")
    assert list(result.problems) == [f"{NAME}/ids.json"]


def test_a_kept_attachment_without_writer_is_left_out(tmp_path: Path) -> None:
    index = _index(2)
    index.keep_attachment("nobody-writes-this")
    index.save(tmp_path / "idx")
    assert read_manifest(tmp_path / "idx").attachments is None
    assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == sorted(
        ["manifest.json", "vectors.faiss", "vectors.state.npz", "documents.sqlite"]
    )


def test_invalid_names_are_refused() -> None:
    for name in ("", "a/b", ".hidden", "documents.sqlite", "manifest.json"):
        with pytest.raises(ValueError):
            register_attachment(name, _writer)
