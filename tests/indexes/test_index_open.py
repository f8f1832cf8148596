"""Opening an index checks size and mtime of its vector files against the manifest, and hashes only what may
have changed; the live table (documents.sqlite) is SQLite's to check (``--verify`` runs its integrity
check)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import winnow.indexes.index_dir as index_dir
from winnow.indexes import DocumentRecord, IndexCorruptedError, WinnowIndex, read_manifest, verify_index

DIM = 8
FILES = ("vectors.faiss", "vectors.state.npz")  # hashed; documents.sqlite is written in place
ALL_FILES = (*FILES, "documents.sqlite")


@pytest.fixture()
def saved(tmp_path: Path) -> Path:
    """A saved index whose manifest is newer than its data files, as it is after saving a big index."""
    index = WinnowIndex.create(DIM, embedder="tiny")
    x = np.random.default_rng(0).standard_normal((20, DIM)).astype(np.float32)
    index.add_records([DocumentRecord(f"d{i}", f"text {i}") for i in range(20)], x)
    target = tmp_path / "idx"
    index.save(target)
    manifest = target / "manifest.json"
    later = manifest.stat().st_mtime_ns + 2_000_000_000  # a small save may share the coarse clock's tick
    os.utime(manifest, ns=(later, later))
    return target


@pytest.fixture()
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the files hashed by index_dir from now on."""
    calls: list[str] = []
    real = index_dir.sha256_file

    def counting(path: str | Path) -> str:
        calls.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(index_dir, "sha256_file", counting)
    return calls


def _rewrite_same_size(file: Path) -> None:
    """Change one byte, keeping the size; the mtime moves on."""
    before = file.stat().st_mtime_ns
    blob = bytearray(file.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    file.write_bytes(bytes(blob))
    after = before + 1_000_000_000
    os.utime(file, ns=(after, after))  # a coarse clock might give it the same mtime within this test


def test_save_records_size_and_mtime(saved: Path) -> None:
    manifest = read_manifest(saved)
    assert manifest.file_stats is not None and sorted(manifest.file_stats) == sorted(FILES)
    for name in FILES:
        stat = (saved / name).stat()
        assert manifest.file_stats[name] == {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        assert len(manifest.files[name]) == 64  # the sha256 is still recorded


def test_load_does_not_hash_when_size_and_mtime_match(saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(path: str | Path) -> str:
        raise AssertionError(f"load hashed {path}")

    monkeypatch.setattr(index_dir, "sha256_file", refuse)
    assert len(WinnowIndex.load(saved)) == 20


def test_same_size_change_with_new_mtime_is_detected(saved: Path, hashed: list[str]) -> None:
    _rewrite_same_size(saved / "vectors.faiss")
    with pytest.raises(IndexCorruptedError, match="does not match the sha256") as info:
        WinnowIndex.load(saved)
    assert info.value.file == "vectors.faiss" and hashed == ["vectors.faiss"]


def test_size_change_is_refused_without_hashing(saved: Path, hashed: list[str]) -> None:
    with open(saved / "vectors.state.npz", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(IndexCorruptedError, match=r"vectors\.state\.npz has \d+ bytes.*re-index") as info:
        WinnowIndex.load(saved)
    assert info.value.file == "vectors.state.npz" and hashed == []


def test_a_written_table_is_not_checked_against_the_manifest(saved: Path, hashed: list[str]) -> None:
    index = WinnowIndex.load(saved)
    index.add_records([DocumentRecord("new", "new text")], np.ones((1, DIM), dtype=np.float32))
    assert read_manifest(saved).file_stats.get("documents.sqlite") is None
    again = WinnowIndex.load(saved)
    assert again.table.count() == 21 and len(again) == 21 and hashed == []


def test_a_damaged_table_is_refused(saved: Path) -> None:
    (saved / "documents.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(IndexCorruptedError) as info:
        WinnowIndex.load(saved)
    assert info.value.file == "documents.sqlite"
    assert "integrity check" in verify_index(saved).problems["documents.sqlite"]


def test_copy_without_times_loads_by_hashing(
    saved: Path, tmp_path: Path, hashed: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(saved, copy, copy_function=shutil.copyfile)  # like `cp -r`: new mtimes
    for name in FILES:
        then = read_manifest(copy).file_stats[name]["mtime_ns"] - 5_000_000_000
        os.utime(copy / name, ns=(then, then))  # whatever the clock, the mtime now differs
    assert len(WinnowIndex.load(copy)) == 20
    assert sorted(hashed) == sorted(FILES)
    assert "changed its modification time" in caplog.text


def test_file_as_new_as_the_manifest_is_hashed(saved: Path, hashed: list[str]) -> None:
    """A same-size rewrite within the save's clock tick keeps the mtime; such files are always hashed."""
    manifest = saved / "manifest.json"
    mtime = read_manifest(saved).file_stats["vectors.faiss"]["mtime_ns"]
    os.utime(manifest, ns=(mtime, mtime))
    WinnowIndex.load(saved)
    assert "vectors.faiss" in hashed


def test_old_manifest_without_sizes_loads_with_full_hash(saved: Path, hashed: list[str]) -> None:
    manifest_path = saved / "manifest.json"
    data = json.loads(manifest_path.read_text())
    del data["file_stats"]
    manifest_path.write_text(json.dumps(data))
    assert read_manifest(saved).file_stats is None
    assert len(WinnowIndex.load(saved)) == 20
    assert sorted(hashed) == sorted(FILES)

    _rewrite_same_size(saved / "vectors.faiss")
    with pytest.raises(IndexCorruptedError, match="does not match the sha256"):
        WinnowIndex.load(saved)


def test_verify_index_hashes_every_file(saved: Path, hashed: list[str]) -> None:
    result = verify_index(saved)
    assert result.ok and result.problems == {} and sorted(result.files) == sorted(ALL_FILES)
    assert sorted(hashed) == sorted(FILES)  # even though sizes and mtimes match

    # a same-size change with its mtime put back escapes load, not verify
    stats = read_manifest(saved).file_stats["vectors.faiss"]
    _rewrite_same_size(saved / "vectors.faiss")
    os.utime(saved / "vectors.faiss", ns=(stats["mtime_ns"], stats["mtime_ns"]))
    result = verify_index(saved)
    assert not result.ok and list(result.problems) == ["vectors.faiss"]
    assert "does not match the sha256" in result.problems["vectors.faiss"]


def test_verify_index_reports_missing_and_unreadable(saved: Path) -> None:
    (saved / "vectors.state.npz").unlink()
    assert "missing vectors.state.npz" in verify_index(saved).problems["vectors.state.npz"]
    (saved / "manifest.json").write_text("{not json")
    assert list(verify_index(saved).problems) == ["manifest.json"]
