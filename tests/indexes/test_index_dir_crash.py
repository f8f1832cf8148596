"""A save killed between its two renames, leftover temp folders, and saves that do not hold up readers."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from winnow.indexes import (
    DocumentRecord,
    IndexCorruptedError,
    IndexNotFoundError,
    WinnowIndex,
    recover_interrupted_save,
)
from winnow.indexes import index_dir as index_dir_module

DIM = 8

_CRASHING_SAVE = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    from winnow.indexes import DocumentRecord, WinnowIndex
    from winnow.indexes import index_dir

    path = sys.argv[1]
    rng = np.random.default_rng(0)
    index = WinnowIndex.create(8, embedder="e")
    index.add_records([DocumentRecord(id=f"d{i}", text=f"doc {i}") for i in range(50)],
                      rng.standard_normal((50, 8)).astype(np.float32))
    index.save(path)
    late = rng.standard_normal((1, 8)).astype(np.float32)
    index.add_records([DocumentRecord(id="late", text="late")], late)
    index_dir._between_renames = lambda: os._exit(17)  # the process dies after moving the old index aside
    index.save(path)
    sys.exit(0)
    """
)


def _leftovers(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}."))


def _index(n: int, seed: int = 0) -> WinnowIndex:
    index = WinnowIndex.create(DIM, embedder="e")
    vectors = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    index.add_records([DocumentRecord(id=f"d{i}", text=f"doc {i}") for i in range(n)], vectors)
    return index


def test_a_save_killed_between_the_renames_is_restored_at_the_next_start(tmp_path):
    path = tmp_path / "index"
    proc = subprocess.run(
        [sys.executable, "-c", _CRASHING_SAVE, str(path)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 17, proc.stderr[-2000:]
    assert not (path / "manifest.json").exists()  # what the next start used to find: no index at all
    assert any(name.startswith(".index.old-") for name in _leftovers(path))
    with pytest.raises(IndexNotFoundError, match="interrupted save"):
        WinnowIndex.load(path)

    assert recover_interrupted_save(path) is True
    loaded = WinnowIndex.load(path)
    assert loaded.table.count() == 50 and len(loaded) == 50  # the full index saved before the crash
    assert _leftovers(path) == []


def test_stale_temp_and_old_folders_are_removed(tmp_path):
    path = tmp_path / "index"
    _index(5).save(path)
    (tmp_path / ".index.tmp-abc123").mkdir()
    (tmp_path / ".index.tmp-abc123" / "vectors.faiss").write_bytes(b"partial")
    _index(3).save(tmp_path / ".index.old-deadbeef")
    (tmp_path / ".other.tmp-1").mkdir()  # another index's folder is not ours to remove
    assert recover_interrupted_save(path) is False
    assert _leftovers(path) == []
    assert (tmp_path / ".other.tmp-1").is_dir()
    assert WinnowIndex.load(path).table.count() == 5


def test_two_candidates_refuse_with_what_to_do(tmp_path):
    path = tmp_path / "index"
    _index(2).save(tmp_path / ".index.old-11111111")
    _index(3).save(tmp_path / ".index.old-22222222")
    with pytest.raises(IndexCorruptedError, match="move the newest"):
        recover_interrupted_save(path)
    assert len(_leftovers(path)) == 2  # nothing is removed when it cannot tell


def test_save_does_not_hold_the_index_lock_while_writing(tmp_path, monkeypatch):
    index = _index(200)
    writing, checked = threading.Event(), threading.Event()
    real_sha = index_dir_module.sha256_file

    def slow_sha(path):  # the write phase, slowed down until the main thread has had its turn
        writing.set()
        checked.wait(10)
        return real_sha(path)

    monkeypatch.setattr(index_dir_module, "sha256_file", slow_sha)
    errors: list[BaseException] = []

    def save() -> None:
        try:
            index.save(tmp_path / "index")
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    saver = threading.Thread(target=save)
    saver.start()
    try:
        assert writing.wait(10)
        got_lock = index.lock.acquire(timeout=2)
        assert got_lock, "save() holds the index lock while it writes and hashes the files"
        try:
            assert index.search(np.ones((1, DIM), dtype=np.float32), 3)[0]
            # a write during the save is not in this save, and does not break it
            index.add_records([DocumentRecord(id="during", text="x")], np.ones((1, DIM), dtype=np.float32))
        finally:
            index.lock.release()
    finally:
        checked.set()
        saver.join(30)
    assert not errors
    saved = WinnowIndex.load(tmp_path / "index")
    assert saved.table.count() == 200 and saved.table.get(["during"])[0] is None
    assert index.table.count() == 201


def test_disk_full_while_saving_keeps_the_previous_index(tmp_path, monkeypatch):
    import errno

    from winnow.indexes import StorageFullError

    path = tmp_path / "index"
    _index(4).save(path)

    def full(path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(index_dir_module, "fsync_file", full)
    with pytest.raises(StorageFullError, match="Free disk space"):
        _index(9).save(path)
    assert _leftovers(path) == []
    assert WinnowIndex.load(path).table.count() == 4
