"""The write-ahead log: appended writes replay onto a saved index; torn tails and damage are handled."""

from __future__ import annotations

import numpy as np
import pytest

from winnow.indexes import (
    DocumentRecord,
    IndexCorruptedError,
    IndexWrite,
    WinnowIndex,
    WriteLog,
    upsert_write,
)

DIM = 8


def _vectors(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def _upsert(ids: list[str], seed: int, text: str = "v1") -> IndexWrite:
    records = [DocumentRecord(id=i, text=f"{i} {text}", meta={"v": text}) for i in ids]
    return upsert_write(ids, records, _vectors(len(ids), seed), [True] * len(ids))


def _state(index: WinnowIndex) -> dict[str, tuple]:
    return {r.id: (r.text, r.meta, r.parent_id) for r in index.table.iter_records(with_embedding=False)}


def test_replay_restores_every_write(tmp_path):
    base = WinnowIndex.create(DIM, embedder="e")
    base.save(tmp_path / "idx")
    log = WriteLog(tmp_path / "idx.wal")
    live = WinnowIndex.load(tmp_path / "idx")
    for write in [
        _upsert(["a", "b"], 0),
        _upsert(["c"], 1),
        _upsert(["a"], 2, "v2"),
        IndexWrite("delete", ["b"]),
    ]:
        log.append(write)
        write.apply(live)
    assert len(log) == 4
    log.close()
    restored = WinnowIndex.load(tmp_path / "idx")
    assert WriteLog(tmp_path / "idx.wal").replay(restored) == 4
    assert (
        _state(restored)
        == _state(live)
        == {"a": ("a v2", {"v": "v2"}, None), "c": ("c v1", {"v": "v1"}, None)}
    )
    q = _vectors(1, 2)  # the vector of a's second version
    assert restored.search(q, 1)[0][0][0].id == "a"
    np.testing.assert_allclose(restored.search(q, 2)[0][0][1], live.search(q, 2)[0][0][1], rtol=1e-6)


def test_checkpoint_saves_and_empties_the_log(tmp_path):
    index = WinnowIndex.create(DIM, embedder="e")
    log = WriteLog(tmp_path / "idx.wal")
    write = _upsert(["a"], 0)
    log.append(write)
    write.apply(index)
    log.checkpoint(index, tmp_path / "idx")
    assert len(log) == 0 and (tmp_path / "idx.wal").read_bytes() == b""
    assert _state(WinnowIndex.load(tmp_path / "idx")) == {"a": ("a v1", {"v": "v1"}, None)}
    log.append(_upsert(["b"], 1))  # the log goes on after a checkpoint
    log.close()
    assert len(WriteLog(tmp_path / "idx.wal")) == 1


def test_replaying_writes_the_index_already_holds_is_harmless(tmp_path):
    index = WinnowIndex.create(DIM, embedder="e")
    writes = [_upsert(["a", "b"], 0), IndexWrite("delete", ["a"])]
    for w in writes:
        w.apply(index)
    before = _state(index)
    for w in writes:
        w.apply(index)
    assert _state(index) == before == {"b": ("b v1", {"v": "v1"}, None)}
    assert len(index) == 1


def test_torn_last_line_is_dropped_and_the_log_stays_usable(tmp_path, caplog):
    path = tmp_path / "idx.wal"
    log = WriteLog(path)
    log.append(_upsert(["a"], 0))
    log.close()
    with open(path, "ab") as handle:
        handle.write(b'{"crc": 1, "body": "{\\"v\\": 1, \\"se')  # the process died mid-write
    log = WriteLog(path)
    assert len(log) == 1 and "torn" in caplog.text
    log.append(_upsert(["b"], 1))
    log.close()
    index = WinnowIndex.create(DIM, embedder="e")
    assert WriteLog(path).replay(index) == 2
    assert set(_state(index)) == {"a", "b"}


def test_damage_before_the_end_raises(tmp_path):
    path = tmp_path / "idx.wal"
    log = WriteLog(path)
    for i in range(3):
        log.append(_upsert([f"d{i}"], i))
    log.close()
    lines = path.read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b"d1", b"dX")  # CRC no longer matches
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(IndexCorruptedError, match="line 2"):
        WriteLog(path)


def test_upsert_replaces_stale_chunks(tmp_path):
    index = WinnowIndex.create(DIM, embedder="e")
    parent = DocumentRecord(id="doc", text="long")
    chunks = [DocumentRecord(id=f"doc#{i}", text=f"part {i}", parent_id="doc") for i in range(3)]
    upsert_write(["doc"], [parent, *chunks], _vectors(3, 0), [False, True, True, True]).apply(index)
    assert len(index) == 3
    shorter = [DocumentRecord(id="doc#0", text="only part", parent_id="doc")]
    upsert_write(
        ["doc"], [DocumentRecord(id="doc", text="short"), *shorter], _vectors(1, 1), [False, True]
    ).apply(index)
    assert set(_state(index)) == {"doc", "doc#0"} and len(index) == 1
    IndexWrite("delete", ["doc"]).apply(index)
    assert index.table.count() == 0 and len(index) == 0


def test_bad_writes_are_refused():
    with pytest.raises(ValueError, match="op"):
        IndexWrite("merge", ["a"])
    with pytest.raises(ValueError, match="flagged"):
        upsert_write(["a"], [DocumentRecord(id="a", text="x")], None, [True])
