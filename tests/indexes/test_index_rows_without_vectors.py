"""WinnowIndex rows without vectors: stored and read like any row, never searched, saved and verified."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from winnow.indexes import DocumentRecord, IndexCorruptedError, WinnowIndex, WinnowIndexError, read_manifest

DIM = 8
EMBEDDER = "tiny-test-embedder"


def _records(*ids: str) -> list[DocumentRecord]:
    return [DocumentRecord(i, f"text {i}", {"id": i}) for i in ids]


def _unit(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _found(index: WinnowIndex, query: np.ndarray, k: int = 10) -> list[str]:
    return [record.id for record, _ in index.search(query[None, :], k)[0]]


@pytest.fixture()
def mixed() -> tuple[WinnowIndex, np.ndarray]:
    """Rows a, c with vectors and b, d without, inserted in that order."""
    x = _unit(2)
    index = WinnowIndex.create(DIM, embedder=EMBEDDER)
    index.add_records(_records("a", "b", "c", "d"), x, has_vector=[True, False, True, False])
    return index, x


def test_add_rows_without_vectors(mixed: tuple[WinnowIndex, np.ndarray]) -> None:
    index, x = mixed
    assert len(index) == 2 and index.table.count() == 4
    assert [r.id for r in index.table.iter_records()] == ["a", "b", "c", "d"]  # keys in insertion order
    assert sorted(_found(index, x[0])) == ["a", "c"]
    index.add_records(_records("e"))  # vectors=None: a table row only
    assert len(index) == 2 and index.table.count() == 5
    assert index.search(x[:1], 5, allow_doc_ids=["b", "e"]) == [[]]


def test_add_checks_the_vector_count_and_mask() -> None:
    index = WinnowIndex.create(DIM, embedder=EMBEDDER)
    with pytest.raises(ValueError, match="1 records marked in has_vector for 2 vectors"):
        index.add_records(_records("a", "b"), _unit(2), has_vector=[True, False])
    with pytest.raises(ValueError, match="one flag each"):
        index.add_records(_records("a", "b"), _unit(1), has_vector=[True])
    with pytest.raises(ValueError, match="vectors is None"):
        index.add_records(_records("a"), None, has_vector=[True])
    assert index.table.count() == 0


def test_store_embeddings_only_for_rows_with_vectors() -> None:
    x = _unit(1)
    index = WinnowIndex.create(DIM, embedder=EMBEDDER)
    index.add_records(_records("a", "b"), x * 3, has_vector=[False, True], store_embeddings=True)
    a, b = index.table.get(["a", "b"])
    assert a.embedding is None
    np.testing.assert_array_equal(b.embedding, x[0] * 3)


def test_upsert_gives_and_takes_a_vector(mixed: tuple[WinnowIndex, np.ndarray]) -> None:
    index, x = mixed
    key_b = index.table.keys_for(["b"])[0]
    new = _unit(1, seed=7)
    assert index.upsert_records(_records("b"), new).tolist() == [key_b]  # vectorless -> vectored, same key
    assert len(index) == 3 and _found(index, new[0], 1) == ["b"]
    index.upsert_records([DocumentRecord("b", "no vector again", {})])  # vectored -> vectorless
    assert len(index) == 2 and index.table.count() == 4
    assert "b" not in _found(index, new[0])
    assert index.table.get(["b"])[0].text == "no vector again"


def test_delete_rows_with_and_without_vectors(mixed: tuple[WinnowIndex, np.ndarray]) -> None:
    index, x = mixed
    assert index.delete_ids(["a", "b", "unknown"]) == 2
    assert len(index) == 1 and index.table.count() == 2
    assert _found(index, x[0]) == ["c"]
    index.delete_all()
    assert len(index) == 0 and index.table.count() == 0


def test_save_load_round_trip(mixed: tuple[WinnowIndex, np.ndarray], tmp_path: Path) -> None:
    index, x = mixed
    manifest = index.save(tmp_path / "idx")
    assert (manifest.count, manifest.documents) == (2, 4)
    assert read_manifest(tmp_path / "idx") == manifest
    loaded = WinnowIndex.load(tmp_path / "idx")
    assert len(loaded) == 2 and loaded.table.count() == 4
    assert [r.id for r in loaded.table.iter_records()] == ["a", "b", "c", "d"]
    assert sorted(_found(loaded, x[1])) == ["a", "c"]
    loaded.add_records(_records("e"))  # keys keep counting after a load
    assert loaded.table.keys_for(["e"])[0] > loaded.table.keys_for(["d"])[0]


def test_manifest_without_documents_count_still_loads(tmp_path: Path) -> None:
    """Manifests written before rows without vectors existed have no ``documents`` field."""
    index = WinnowIndex.create(DIM, embedder=EMBEDDER)
    index.add_records(_records("a", "b"), _unit(2))
    index.save(tmp_path / "idx")
    manifest_path = tmp_path / "idx" / "manifest.json"
    data = json.loads(manifest_path.read_text())
    del data["documents"]
    manifest_path.write_text(json.dumps(data))
    assert read_manifest(tmp_path / "idx").document_count == 2
    assert WinnowIndex.load(tmp_path / "idx").table.count() == 2


def test_consistency_checks_catch_a_vector_without_a_row(
    mixed: tuple[WinnowIndex, np.ndarray], tmp_path: Path
) -> None:
    index, x = mixed
    index.save(tmp_path / "idx")
    manifest_path = tmp_path / "idx" / "manifest.json"
    original = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**original, "documents": 3}))
    with pytest.raises(IndexCorruptedError, match="counts disagree"):
        WinnowIndex.load(tmp_path / "idx", verify_checksums=False)
    manifest_path.write_text(json.dumps(original))

    index.table.delete(["a"])  # the row goes, its vector stays: inconsistent
    with pytest.raises(WinnowIndexError, match="no document row"):
        index.save(tmp_path / "other")
    assert not (tmp_path / "other").exists()

    index.vectors.save(tmp_path / "idx" / "vectors.faiss")  # the same state on disk, counts fixed up
    index.table.backup_to(tmp_path / "idx" / "documents.sqlite")
    manifest_path.write_text(json.dumps({**original, "documents": 3, "table_changes": index.table.stamp}))
    with pytest.raises(IndexCorruptedError, match="no document row"):
        WinnowIndex.load(tmp_path / "idx", verify_checksums=False)
