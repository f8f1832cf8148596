"""Storage failures over HTTP: a full disk is a 507, a failed fsync a 503 until restart, a failed apply is
not replayed, scheduled saves back off, and a save killed mid-swap does not start an empty index."""

from __future__ import annotations

import errno
import os
import shutil
from typing import Any

import pytest
from fastapi.testclient import TestClient

from winnow.api.app import create_app
from winnow.api.service import SearchService
from winnow.indexes import IndexWrite, StorageFullError, WinnowIndex, WriteLog
from winnow.indexes import write_log as write_log_module


class _FailingOs:
    """``os`` as the write log sees it: ``os.write`` or ``os.fsync`` fail once with ``err``."""

    def __init__(self, call: str, err: int) -> None:
        self.call, self.err = call, err

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def _maybe_fail(self, call: str) -> None:
        if self.call == call:
            self.call = ""
            raise OSError(self.err, os.strerror(self.err))

    def write(self, fd: int, data: Any) -> int:
        self._maybe_fail("write")
        return os.write(fd, data)

    def fsync(self, fd: int) -> None:
        self._maybe_fail("fsync")
        os.fsync(fd)


def _put(client: TestClient, doc_id: str) -> Any:
    return client.put("/documents", json={"documents": [{"id": doc_id, "text": f"text of {doc_id}"}]})


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_disk_on_write_is_a_507_with_a_message(make_settings, monkeypatch, err):
    with TestClient(create_app(make_settings(reranker="none")), raise_server_exceptions=False) as client:
        monkeypatch.setattr(write_log_module, "os", _FailingOs("write", err))
        r = _put(client, "lost")
        assert r.status_code == 507, r.text
        assert "full" in r.json()["message"] and "this is a bug" not in r.json()["message"]
        monkeypatch.undo()
        assert _put(client, "kept").status_code == 200  # space is back: writes go on
        assert client.get("/documents/lost").status_code == 404


def test_an_fsync_error_refuses_writes_with_503_until_restart(make_settings, index_copy, monkeypatch):
    settings = make_settings(reranker="none", snapshot_interval_s=0)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        assert _put(client, "acked").status_code == 200
        monkeypatch.setattr(write_log_module, "os", _FailingOs("fsync", errno.EIO))
        r = _put(client, "unsure")
        assert r.status_code == 503, r.text
        monkeypatch.undo()
        r = _put(client, "after")
        assert r.status_code == 503 and "restart" in r.json()["message"]
        assert client.delete("/documents/acked").status_code == 503
        assert client.get("/documents/acked").status_code == 200  # reads go on
        assert client.post("/search", json={"query": "text"}).status_code == 200
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:  # a restart
        assert client.get("/documents/acked").status_code == 200
        assert client.get("/documents/unsure").status_code == 404
        assert _put(client, "after").status_code == 200


def test_a_write_whose_apply_fails_is_not_replayed(make_settings, monkeypatch):
    settings = make_settings(reranker="none", snapshot_interval_s=0)
    real_apply = IndexWrite.apply

    def failing_apply(self: IndexWrite, index: WinnowIndex) -> int:
        if "boom" in self.ids:
            index.table.upsert(self.records)  # half applied, then a failure
            raise RuntimeError("injected apply failure")
        return real_apply(self, index)

    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        assert _put(client, "acked").status_code == 200
        monkeypatch.setattr(IndexWrite, "apply", failing_apply)
        assert _put(client, "boom").status_code == 500
        r = _put(client, "later")
        assert r.status_code == 503 and "restart" in r.json()["message"]
    monkeypatch.undo()
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:  # replay
        assert client.get("/documents/acked").status_code == 200
        assert client.get("/documents/boom").status_code == 404
        assert client.get("/documents/later").status_code == 404


def test_scheduled_saves_back_off_on_a_full_disk(make_settings, index_copy, monkeypatch):
    settings = make_settings(reranker="none", snapshot_interval_s=1.0)
    service = SearchService(settings)
    service.index = WinnowIndex.load(index_copy)
    service.log = WriteLog(settings.write_log)
    write = IndexWrite(op="delete", ids=["fin-1"])
    service.log.append(write)
    write.apply(service.index)  # committed in place; the checkpoint's compaction is what fails

    def full(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("winnow.indexes.index_dir.COMPACT_MIN_CHANGES", 0)  # every checkpoint compacts
    monkeypatch.setattr("winnow.indexes.index_dir.fsync_file", full)
    service._last_snapshot -= 10  # the interval has passed
    assert service.snapshot_due()
    waits = []
    for _ in range(4):
        with pytest.raises(StorageFullError):
            service.snapshot()
        assert not service.snapshot_due()  # not every round: after a back-off
        waits.append(service.snapshot_retry_s())
    assert waits == sorted(waits) and waits[-1] >= 4 * waits[0]
    service._next_snapshot_try = 0.0  # the back-off has passed
    assert service.snapshot_due()
    assert not [p for p in index_copy.parent.iterdir() if p.name.startswith(".index.")]  # no temp left
    monkeypatch.undo()
    assert service.snapshot()
    assert service.snapshot_retry_s() == 0.0 and len(service.log) == 0
    service.log.close()


def test_a_start_after_a_save_killed_between_its_renames_serves_the_full_index(make_settings, index_copy):
    # what the crash leaves: the index moved aside, the new copy still under its temporary name
    old = index_copy.with_name(".index.old-0badc0de")
    os.replace(index_copy, old)
    shutil.copytree(old, index_copy.with_name(".index.tmp-k1ll3d"))
    with TestClient(create_app(make_settings(reranker="none"))) as client:
        assert client.get("/ready").json()["documents"] == 5
    leftovers = [p.name for p in index_copy.parent.iterdir() if p.name.startswith(".index.")]
    assert leftovers == []
