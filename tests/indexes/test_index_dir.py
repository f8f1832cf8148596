"""WinnowIndex: consistent table + vectors, atomic save, verified load."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import winnow.indexes.index_dir as index_dir
from winnow.indexes import (
    DocumentRecord,
    DocumentTable,
    DuplicateIdError,
    EmbedderMismatchError,
    IndexCorruptedError,
    IndexNotFoundError,
    IndexNotTrainedError,
    UnsupportedIndexFormatError,
    WinnowIndex,
    WinnowIndexError,
    read_manifest,
)

DIM = 16
N = 300
EMBEDDER = "tiny-test-embedder"


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((N, DIM)).astype(np.float32)


def make_records(n: int, start: int = 0) -> list[DocumentRecord]:
    return [
        DocumentRecord(f"doc{i}", f"text {i}", {"i": i, "tags": ["a", None]}, parent_id=f"p{i // 3}")
        for i in range(start, start + n)
    ]


@pytest.fixture()
def index(data: np.ndarray) -> WinnowIndex:
    built = WinnowIndex.create(DIM, embedder=EMBEDDER, factory="HNSW32", extra={"chunk_words": 200})
    built.add_records(make_records(N), data)
    return built


def top_ids(result: list[list[tuple[DocumentRecord, float]]]) -> list[list[str]]:
    return [[record.id for record, _ in row] for row in result]


def test_add_search_upsert_delete(index: WinnowIndex, data: np.ndarray) -> None:
    assert len(index) == N == index.table.count()
    result = index.search(data[:3], 4)
    assert [row[0] for row in top_ids(result)] == ["doc0", "doc1", "doc2"]
    record, score = result[0][0]
    assert (
        record.text == "text 0"
        and record.meta == {"i": 0, "tags": ["a", None]}
        and score == pytest.approx(1.0)
    )
    assert record.embedding is None  # not requested

    allowed = index.search(data[:1], 3, allow_doc_ids=["doc7", "doc9", "unknown"])
    assert sorted(top_ids(allowed)[0]) == ["doc7", "doc9"]

    keys = index.table.keys_for(["doc5"])
    new_keys = index.upsert_records([DocumentRecord("doc5", "moved", {})], data[100:101])
    assert new_keys.tolist() == keys.tolist() and len(index) == N
    assert set(top_ids(index.search(data[100:101], 2))[0]) == {"doc100", "doc5"}

    assert index.delete_ids(["doc0", "doc1", "nope"]) == 2
    assert len(index) == N - 2 == index.table.count()
    assert "doc0" not in top_ids(index.search(data[:1], 5))[0]


def test_add_records_is_all_or_nothing(data: np.ndarray) -> None:
    ivf = WinnowIndex.create(DIM, embedder=EMBEDDER, factory="IVF4,Flat")
    with pytest.raises(IndexNotTrainedError, match="train"):
        ivf.add_records(make_records(3), data[:3])
    assert ivf.table.count() == 0

    flat = WinnowIndex.create(DIM, embedder=EMBEDDER)
    flat.add_records(make_records(3), data[:3])
    with pytest.raises(DuplicateIdError):
        flat.add_records(make_records(2, start=2), data[:2])
    with pytest.raises(ValueError, match="2 records for 3 vectors"):
        flat.add_records(make_records(2, start=10), data[:3])

    def failing_add(ids: object, vectors: object) -> None:
        raise RuntimeError("vector side failed (simulated)")

    flat.vectors.add = failing_add  # the vector side fails after the table insert
    with pytest.raises(RuntimeError, match="simulated"):
        flat.add_records(make_records(1, start=50), data[:1])
    assert flat.table.count() == 3 and flat.table.get(["doc50"]) == [None]  # the table insert was undone


def test_store_embeddings(data: np.ndarray) -> None:
    index = WinnowIndex.create(DIM, embedder=EMBEDDER)
    index.add_records(make_records(2), data[:2] * 5, store_embeddings=True)
    (record, _), *_ = index.search(data[:1], 1, return_embedding=True)[0]
    np.testing.assert_array_equal(record.embedding, data[0] * 5)  # as given, not normalised


def test_save_load_round_trip(index: WinnowIndex, data: np.ndarray, tmp_path: Path) -> None:
    index.vectors.remove(index.table.keys_for(["doc299"]))  # a tombstone must survive too
    index.table.delete(["doc299"])
    target = tmp_path / "idx"
    manifest = index.save(target)
    assert sorted(p.name for p in target.iterdir()) == sorted(
        ["manifest.json", "vectors.faiss", "vectors.state.npz", "documents.sqlite"]
    )
    assert [p.name for p in tmp_path.iterdir()] == ["idx"]  # no temp or backup dirs left behind
    on_disk = read_manifest(target)
    assert on_disk == manifest
    assert (on_disk.embedder, on_disk.dim, on_disk.metric, on_disk.factory, on_disk.count) == (
        EMBEDDER,
        DIM,
        "ip",
        "HNSW32",
        N - 1,
    )
    assert on_disk.extra == {"chunk_words": 200} and on_disk.format_version == index_dir.FORMAT_VERSION

    loaded = WinnowIndex.load(target, expected_embedder=EMBEDDER)
    assert loaded.embedder == EMBEDDER and loaded.extra == {"chunk_words": 200}
    assert len(loaded) == N - 1 and loaded.vectors.num_tombstones == 1
    assert top_ids(loaded.search(data[:20], 5)) == top_ids(index.search(data[:20], 5))
    assert loaded.table.path == target / "documents.sqlite"  # opened in place, not copied into memory
    assert loaded.live_dir == target and loaded.pending_changes() == 0


def test_resave_to_same_path_after_load(index: WinnowIndex, data: np.ndarray, tmp_path: Path) -> None:
    target = tmp_path / "idx"
    index.save(target)
    loaded = WinnowIndex.load(target)
    loaded.add_records([DocumentRecord("extra", "new doc")], data[:1] * -1)
    loaded.delete_ids(["doc3"])
    loaded.save(target)
    again = WinnowIndex.load(target)
    assert len(again) == N and again.table.get(["extra", "doc3"])[1] is None
    assert top_ids(again.search(-data[:1], 1))[0] == ["extra"]
    again.save(target)  # and once more, from the reloaded copy
    assert len(WinnowIndex.load(target)) == N


def test_corrupted_vectors_file(index: WinnowIndex, tmp_path: Path) -> None:
    target = tmp_path / "idx"
    index.save(target)
    path = target / "vectors.faiss"
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(IndexCorruptedError, match="vectors.faiss") as info:
        WinnowIndex.load(target)
    assert info.value.file == "vectors.faiss"


def test_missing_and_truncated_files(index: WinnowIndex, tmp_path: Path) -> None:
    target = tmp_path / "idx"
    index.save(target)
    (target / "documents.sqlite").write_bytes(b"garbage")
    with pytest.raises(IndexCorruptedError, match="documents.sqlite"):
        WinnowIndex.load(target)
    with pytest.raises(IndexCorruptedError, match="documents.sqlite"):
        WinnowIndex.load(target, verify_checksums=False)  # unreadable, not only a bad checksum
    (target / "documents.sqlite").unlink()
    with pytest.raises(IndexCorruptedError, match="missing documents.sqlite"):
        WinnowIndex.load(target)
    with pytest.raises(IndexNotFoundError):
        WinnowIndex.load(tmp_path / "nothing-here")


def test_manifest_checks(index: WinnowIndex, tmp_path: Path) -> None:
    target = tmp_path / "idx"
    index.save(target)
    manifest_path = target / "manifest.json"
    original = json.loads(manifest_path.read_text())

    manifest_path.write_text(json.dumps({**original, "count": N + 1}))
    with pytest.raises(IndexCorruptedError, match="counts disagree"):
        WinnowIndex.load(target)
    manifest_path.write_text(json.dumps({**original, "format_version": 99}))
    with pytest.raises(UnsupportedIndexFormatError, match="99"):
        WinnowIndex.load(target)
    manifest_path.write_text("{not json")
    with pytest.raises(IndexCorruptedError, match="manifest.json"):
        WinnowIndex.load(target)


def test_embedder_mismatch(index: WinnowIndex, tmp_path: Path) -> None:
    target = tmp_path / "idx"
    index.save(target)
    with pytest.raises(EmbedderMismatchError) as info:
        WinnowIndex.load(target, expected_embedder="other-model")
    message = str(info.value)
    assert (
        EMBEDDER in message and "other-model" in message and "re-index" in message and "--embedder" in message
    )
    assert isinstance(info.value, ValueError)


def test_failed_save_leaves_previous_index(
    index: WinnowIndex, data: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "idx"
    index.save(target)
    index.add_records([DocumentRecord("later", "x")], data[:1])

    def broken_backup(self: DocumentTable, path: str | Path) -> Path:
        Path(path).write_bytes(b"half a file")
        raise OSError("disk full (simulated)")

    with monkeypatch.context() as patch:
        patch.setattr(DocumentTable, "backup_to", broken_backup)
        with pytest.raises(OSError, match="simulated"):
            index.save(target)
    assert [p.name for p in tmp_path.iterdir()] == ["idx"]
    assert len(WinnowIndex.load(target)) == N

    real_replace = os.replace

    def failing_swap(src: str | Path, dst: str | Path) -> None:
        if Path(src).name.startswith(".idx.tmp-"):
            raise OSError("rename failed (simulated)")
        real_replace(src, dst)

    with monkeypatch.context() as patch:
        patch.setattr(index_dir.os, "replace", failing_swap)
        with pytest.raises(OSError, match="simulated"):
            index.save(target)
    assert [p.name for p in tmp_path.iterdir()] == ["idx"]  # old directory put back, temp removed
    assert len(WinnowIndex.load(target)) == N

    index.save(target)
    assert len(WinnowIndex.load(target)) == N + 1


def test_refuses_to_overwrite_other_directories(index: WinnowIndex, tmp_path: Path) -> None:
    other = tmp_path / "photos"
    other.mkdir()
    (other / "cat.jpg").write_bytes(b"meow")
    with pytest.raises(WinnowIndexError, match="refusing to overwrite"):
        index.save(other)
    assert (other / "cat.jpg").read_bytes() == b"meow"
    (tmp_path / "file").write_text("x")
    with pytest.raises(WinnowIndexError, match="not a directory"):
        index.save(tmp_path / "file")
    empty = tmp_path / "empty"
    empty.mkdir()
    index.save(empty)
    assert len(WinnowIndex.load(empty)) == N
