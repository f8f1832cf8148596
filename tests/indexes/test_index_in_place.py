"""A loaded index writes in place: rows and vector changes go to the live table in one transaction, the
vector snapshot is replayed on open, compaction rewrites it (finished by the next open if interrupted), and
read-only opens memory-map it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from winnow.indexes import DocumentRecord, WinnowIndex, read_manifest
from winnow.indexes import index_dir as index_dir_module
from winnow.indexes.index_dir import index_disk_bytes, process_rss_bytes

DIM = 8


def _records(prefix: str, n: int) -> list[DocumentRecord]:
    return [DocumentRecord(id=f"{prefix}{i}", text=f"text {prefix}{i}") for i in range(n)]


def _saved(path: Path, factory: str = "Flat", n: int = 40) -> np.ndarray:
    index = WinnowIndex.create(DIM, embedder="e", factory=factory)
    x = np.random.default_rng(0).standard_normal((n, DIM)).astype(np.float32)
    index.add_records(_records("d", n), x)
    index.save(path)
    return x


def _top(index: WinnowIndex, q: np.ndarray, k: int = 5) -> list[list[str]]:
    return [[r.id for r, _ in row] for row in index.search(q, k)]


def _inode(path: Path) -> tuple[int, int, int]:
    stat = path.stat()
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


@pytest.mark.parametrize("factory", ["Flat", "HNSW32"])
def test_writes_go_in_place_and_are_replayed_on_open(tmp_path: Path, factory: str) -> None:
    path = tmp_path / "idx"
    x = _saved(path, factory)
    snapshot, table_inode = _inode(path / "vectors.faiss"), (path / "documents.sqlite").stat().st_ino
    index = WinnowIndex.load(path)
    rng = np.random.default_rng(1)
    index.add_records(_records("n", 3), rng.standard_normal((3, DIM)))
    index.upsert_records([DocumentRecord("d1", "changed")], rng.standard_normal((1, DIM)))
    index.upsert_records([DocumentRecord("d2", "no vector now")])  # keeps its row, loses its vector
    index.delete_ids(["d3"])
    assert _inode(path / "vectors.faiss") == snapshot
    assert (path / "documents.sqlite").stat().st_ino == table_inode
    assert index.pending_changes() == 6 and index.on_disk() is None

    reopened = WinnowIndex.load(path)
    assert reopened.table.count() == 42 and len(reopened) == 41 == len(index)
    q = np.concatenate([x[:5], rng.standard_normal((5, DIM)).astype(np.float32)])
    assert _top(reopened, q) == _top(index, q)
    assert reopened.table.get(["d1"])[0].text == "changed" and reopened.table.get(["d3"])[0] is None
    assert reopened.on_disk() is None  # written since its manifest: attachments may be stale

    index.compact()
    assert _inode(path / "vectors.faiss")[0] != snapshot[0] and index.pending_changes() == 0
    assert (path / "documents.sqlite").stat().st_ino == table_inode
    assert read_manifest(path).table_changes == index.table.stamp and index.on_disk() is not None
    compacted = WinnowIndex.load(path)
    assert (
        compacted.on_disk() is not None and compacted.vectors.num_tombstones == index.vectors.num_tombstones
    )
    assert _top(compacted, q) == _top(index, q)


def test_save_to_its_own_directory_compacts_and_elsewhere_copies(tmp_path: Path) -> None:
    path = tmp_path / "idx"
    _saved(path)
    index = WinnowIndex.load(path)
    index.delete_ids(["d0"])
    table_inode = (path / "documents.sqlite").stat().st_ino
    index.save(path)
    assert (path / "documents.sqlite").stat().st_ino == table_inode and index.pending_changes() == 0
    index.save(tmp_path / "copy")
    copy = WinnowIndex.load(tmp_path / "copy")
    assert copy.pending_changes() == 0 and copy.table.count() == 39 and copy.on_disk() is not None
    assert index.live_dir == path  # still writes to its own directory
    index.delete_ids(["d1"])
    assert WinnowIndex.load(tmp_path / "copy").table.count() == 39


def test_changes_past_the_threshold_compact_by_themselves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "idx"
    _saved(path)
    monkeypatch.setattr(index_dir_module, "COMPACT_MIN_CHANGES", 4)
    monkeypatch.setattr(index_dir_module, "COMPACT_FRACTION", 0.0)
    index = WinnowIndex.load(path)
    snapshot = _inode(path / "vectors.faiss")
    index.delete_ids(["d0", "d1", "d2", "d3"])
    assert _inode(path / "vectors.faiss") == snapshot and index.pending_changes() == 4
    index.delete_ids(["d4"])
    assert _inode(path / "vectors.faiss") != snapshot and index.pending_changes() == 0
    assert read_manifest(path).count == 35 and len(WinnowIndex.load(path)) == 35


def test_an_interrupted_compaction_is_finished_by_the_next_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "idx"
    x = _saved(path)
    index = WinnowIndex.load(path)
    index.delete_ids(["d0"])

    def crash() -> None:
        raise KeyboardInterrupt("killed between the moves")

    monkeypatch.setattr(index_dir_module, "_between_compaction_moves", crash)
    with pytest.raises(KeyboardInterrupt):
        index.compact()
    monkeypatch.undo()
    assert (path / ".compact" / "manifest.json").is_file()  # new vectors in place, the old manifest still
    reopened = WinnowIndex.load(path)
    assert not (path / ".compact").exists() and read_manifest(path).count == 39
    assert len(reopened) == 39 and _top(reopened, x[:3]) == _top(index, x[:3])


def test_an_incomplete_stage_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "idx"
    _saved(path)
    (path / ".compact").mkdir()
    (path / ".compact" / "vectors.faiss").write_bytes(b"half written")
    assert len(WinnowIndex.load(path)) == 40
    index = WinnowIndex.load(path)
    index.compact()  # a compaction clears what a crash left before writing its own stage
    assert not (path / ".compact").exists() and len(WinnowIndex.load(path)) == 40


def test_read_only_opens_map_the_snapshot_and_refuse_writes(tmp_path: Path) -> None:
    path = tmp_path / "idx"
    x = _saved(path)
    reader = WinnowIndex.load(path, read_only=True)
    assert reader.vectors.memory_mapped and reader.table.read_only
    assert _top(reader, x[:3])[0][0] == "d0"
    with pytest.raises(PermissionError):
        reader.add_records(_records("n", 1), x[:1])
    with pytest.raises(RuntimeError, match="memory-mapped"):
        reader.vectors.remove(reader.table.keys_for(["d0"]))
    assert reader.table.count() == 40 and len(reader) == 40

    writer = WinnowIndex.load(path)
    writer.add_records(_records("n", 1), -x[:1])
    assert reader.table.get(["n0"])[0] is not None  # committed rows are visible to a reader
    fresh = WinnowIndex.load(path, read_only=True)  # changes listed: read, not mapped, and replayed
    assert not fresh.vectors.memory_mapped and _top(fresh, -x[:1])[0][0] == "n0"
    writer.compact()
    assert _top(reader, x[:3])[0][0] == "d0"  # the old mapping stays valid after the snapshot is replaced
    assert WinnowIndex.load(path, read_only=True).vectors.memory_mapped


def test_an_index_from_before_the_change_list_opens(tmp_path: Path) -> None:
    path = tmp_path / "idx"
    _saved(path)
    import json
    import sqlite3

    conn = sqlite3.connect(path / "documents.sqlite")
    conn.executescript("DROP TABLE vector_changes; DROP TABLE winnow_state;")
    conn.close()
    manifest = json.loads((path / "manifest.json").read_text())
    del manifest["table_changes"]
    (path / "manifest.json").write_text(json.dumps(manifest))
    assert len(WinnowIndex.load(path, read_only=True, verify_checksums=False)) == 40
    index = WinnowIndex.load(path, verify_checksums=False)
    assert index.on_disk() is not None and index.table.stamp == 0
    index.delete_ids(["d0"])
    assert len(WinnowIndex.load(path, verify_checksums=False)) == 39


def test_rss_and_size_helpers(tmp_path: Path) -> None:
    path = tmp_path / "idx"
    _saved(path)
    rss = process_rss_bytes()
    assert rss is None or rss > 0
    assert index_disk_bytes(path) >= sum(
        (path / f).stat().st_size for f in ("vectors.faiss", "documents.sqlite")
    )


def test_only_transactions_that_write_change_the_stamp(tmp_path: Path) -> None:
    path = tmp_path / "idx"
    _saved(path)
    index = WinnowIndex.load(path)
    stamp = index.table.stamp
    assert index.delete_ids(["unknown"]) == 0 and index.table.stamp == stamp
    with index.table.transaction():
        pass
    assert index.table.stamp == stamp and WinnowIndex.load(path).on_disk() is not None
    index.delete_ids(["d0"])
    assert index.table.stamp == stamp + 1 and WinnowIndex.load(path).on_disk() is None
