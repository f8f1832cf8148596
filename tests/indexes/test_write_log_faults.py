"""Fault injection into the write log: whatever fails, acknowledged writes are exactly what replay returns.

Each failure point is injected both through an ``os`` shim (``os.write``/``os.fsync``/``os.replace`` as
``winnow.indexes.write_log`` sees them) and through a fake file object standing in for ``open`` there, so
the same scenario runs against an unbuffered-descriptor log and a buffered-file one.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from winnow.indexes import (
    DocumentRecord,
    IndexWrite,
    StorageFullError,
    WinnowIndex,
    WriteLog,
    WriteLogUnavailableError,
    upsert_write,
)
from winnow.indexes import write_log as write_log_module

DIM = 8


class Faults:
    """Which failure to inject next; it fires once, then disarms."""

    def __init__(self) -> None:
        self.point: str | None = None
        self.fired = 0

    def fire(self, err: int = errno.EIO) -> None:
        self.point = None
        self.fired += 1
        raise OSError(err, os.strerror(err))


class OsShim:
    """``os`` for the write log's module, failing where ``faults`` says."""

    def __init__(self, faults: Faults) -> None:
        self._faults = faults

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def write(self, fd: int, data: Any) -> int:
        point = self._faults.point
        if point == "write":
            self._faults.fire(errno.ENOSPC)
        if point in ("partial", "flush"):  # half the line reaches the file, then the device fails
            self._faults.point = "partial-rest"
            return os.write(fd, bytes(data[: len(data) // 2]))
        if point == "partial-rest":
            self._faults.fire()
        return os.write(fd, data)

    def fsync(self, fd: int) -> None:
        if self._faults.point == "fsync":
            self._faults.fire()
        os.fsync(fd)

    def replace(self, src: Any, dst: Any) -> None:
        if self._faults.point == "checkpoint":
            self._faults.fire(errno.ENOSPC)
        os.replace(src, dst)


class FakeFile:
    """A real binary file whose ``write``/``flush`` fail where ``faults`` says (a buffered writer keeps
    what it could not flush)."""

    def __init__(self, real: Any, faults: Faults) -> None:
        self._real = real
        self._faults = faults

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def __enter__(self) -> FakeFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._real.close()

    def write(self, data: bytes) -> int:
        point = self._faults.point
        if point == "write":
            self._faults.fire(errno.ENOSPC)
        if point == "partial":
            self._real.write(data[: len(data) // 2])
            self._real.flush()
            self._faults.fire()
        return self._real.write(data)

    def flush(self) -> None:
        if self._faults.point == "flush":
            self._faults.fire()
        self._real.flush()


@pytest.fixture()
def faults(monkeypatch: pytest.MonkeyPatch) -> Faults:
    f = Faults()
    monkeypatch.setattr(write_log_module, "os", OsShim(f))

    def fake_open(*args: Any, **kwargs: Any) -> FakeFile:
        return FakeFile(open(*args, **kwargs), f)  # noqa: SIM115 - the fake closes it

    monkeypatch.setattr(write_log_module, "open", fake_open, raising=False)
    return f


def _upsert(doc_id: str, seed: int) -> IndexWrite:
    records = [DocumentRecord(id=doc_id, text=f"{doc_id} text {seed}", meta={"seed": seed})]
    vectors = np.random.default_rng(seed).standard_normal((1, DIM)).astype(np.float32)
    return upsert_write([doc_id], records, vectors, [True])


def _state(index: WinnowIndex) -> dict[str, tuple]:
    return {r.id: (r.text, r.meta) for r in index.table.iter_records(with_embedding=False)}


def _expected(base: Path, acknowledged: list[IndexWrite]) -> dict[str, tuple]:
    index = WinnowIndex.load(base)
    for write in acknowledged:
        write.apply(index)
    return _state(index)


def _replayed(base: Path, wal: Path) -> dict[str, tuple]:
    index = WinnowIndex.load(base)
    log = WriteLog(wal)  # a restart
    log.replay(index)
    log.close()
    return _state(index)


@pytest.fixture()
def base(tmp_path: Path) -> Path:
    index = WinnowIndex.create(DIM, embedder="e")
    _upsert("seed", 0).apply(index)
    index.save(tmp_path / "idx")
    return tmp_path / "idx"


@pytest.mark.parametrize("point", ["write", "partial", "flush", "fsync"])
def test_a_failed_append_never_reappears_and_later_writes_survive(faults, base, tmp_path, point):
    wal = tmp_path / "idx.wal"
    log = WriteLog(wal)
    acknowledged: list[IndexWrite] = []
    first = _upsert("a", 1)
    log.append(first)
    acknowledged.append(first)

    faults.point = point
    with pytest.raises((OSError, WriteLogUnavailableError)):
        log.append(_upsert("failed", 2))  # answered with an error: never acknowledged
    assert faults.fired == 1

    later = _upsert("b", 3)
    if point == "fsync":  # a retried fsync could report success for lost data: refused until restart
        with pytest.raises(WriteLogUnavailableError, match="restart"):
            log.append(later)
        assert log.failure is not None
    else:
        log.append(later)
        acknowledged.append(later)
    log.close()

    replayed = _replayed(base, wal)
    assert "failed" not in replayed
    assert replayed == _expected(base, acknowledged)


def test_disk_full_on_append_is_reported_as_such_and_the_log_stays_usable(faults, base, tmp_path):
    log = WriteLog(tmp_path / "idx.wal")
    faults.point = "write"
    with pytest.raises(StorageFullError, match="full") as info:
        log.append(_upsert("x", 1))
    assert info.value.errno == errno.ENOSPC
    log.append(_upsert("y", 2))
    log.close()
    assert set(_replayed(base, tmp_path / "idx.wal")) == {"seed", "y"}


def test_after_an_fsync_error_a_restart_accepts_writes_again(faults, base, tmp_path):
    wal = tmp_path / "idx.wal"
    log = WriteLog(wal)
    faults.point = "fsync"
    with pytest.raises(WriteLogUnavailableError):
        log.append(_upsert("x", 1))
    log.close()
    restarted = WriteLog(wal)
    restarted.append(_upsert("y", 2))
    restarted.close()
    assert set(_replayed(base, wal)) == {"seed", "y"}


def test_a_failed_apply_is_retracted_from_the_log(base, tmp_path):
    wal = tmp_path / "idx.wal"
    index = WinnowIndex.load(base)
    log = WriteLog(wal)
    good = _upsert("a", 1)
    log.append(good)
    good.apply(index)
    log.append(_upsert("bad", 2))  # its apply fails: the caller takes it back out
    log.retract()
    assert len(log) == 1
    later = _upsert("b", 3)
    log.append(later)
    log.close()
    assert _replayed(base, wal) == _expected(base, [good, later])


def test_a_failed_checkpoint_leaves_the_log_open_and_complete(faults, base, tmp_path):
    wal = tmp_path / "idx.wal"
    index = WinnowIndex.load(base)
    log = WriteLog(wal)
    acknowledged = [_upsert("a", 1)]
    log.append(acknowledged[0])
    acknowledged[0].apply(index)

    faults.point = "checkpoint"
    with pytest.raises(OSError):
        log.checkpoint(index, tmp_path / "idx")
    assert faults.fired == 1
    assert not wal.with_name(wal.name + ".tmp").exists()

    later = _upsert("b", 2)
    log.append(later)  # the old log is still open: the replacement is made before it is closed
    acknowledged.append(later)
    log.close()
    # the index was saved before the failure; replaying on top of it is harmless
    assert _replayed(tmp_path / "idx", wal) == _expected(base, acknowledged)


def test_a_write_that_cannot_apply_is_refused_before_it_is_logged(base):
    index = WinnowIndex.load(base)
    wrong_dim = upsert_write(
        ["w"], [DocumentRecord(id="w", text="w")], np.zeros((1, DIM + 1), dtype=np.float32), [True]
    )
    with pytest.raises(ValueError):
        wrong_dim.check(index)
    repeated = upsert_write(
        ["r"],
        [DocumentRecord(id="r", text="1"), DocumentRecord(id="r", text="2")],
        None,
        [False, False],
    )
    with pytest.raises(ValueError, match="repeat"):
        repeated.check(index)
    IndexWrite(op="delete", ids=["seed"]).check(index)
