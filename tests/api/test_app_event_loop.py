"""A free event loop: nothing that waits on the document table's lock runs on it, so /health answers at once
while a snapshot (which holds that lock while it copies) is under way."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.api.conftest import LiveServer, free_port
from winnow.indexes import DocumentRecord, WinnowIndex, read_manifest


async def _poll_health(url: str, running: Callable[[], bool], also: tuple[str, ...]) -> list[float]:
    """/health latencies, polled every 20 ms while ``running()``; ``also`` paths are requested alongside
    (they read the document count, which waits on the table's lock)."""
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        side = [asyncio.create_task(http.get(path)) for path in also]
        while running():
            start = time.perf_counter()
            r = await http.get("/health")
            latencies.append(time.perf_counter() - start)
            assert r.status_code == 200
            await asyncio.sleep(0.02)
        for task in side:
            assert (await task).status_code == 200
    return latencies


def test_health_answers_while_the_document_table_is_locked(make_settings):
    """Default-suite variant: another thread holds the table's lock for 2 s, as a snapshot's copy does, while
    /ready and /metrics (which count documents) and /health are requested."""
    with LiveServer(make_settings(port=free_port())) as server:
        table = server.app.state.service.index.table
        locked = threading.Event()
        done = threading.Event()

        def hold() -> None:
            with table._lock:
                locked.set()
                time.sleep(2.0)
            done.set()

        threading.Thread(target=hold, daemon=True).start()
        assert locked.wait(10)
        latencies = asyncio.run(
            _poll_health(server.url, lambda: not done.is_set(), ("/ready", "/metrics", "/ready"))
        )
    assert len(latencies) >= 5
    # old code: /ready counted on the event loop and blocked it for the whole 2 s
    assert max(latencies) < 0.5, f"/health took {max(latencies):.2f} s while the table was locked"


def _large_index(folder: Path, embedder: str, n: int, dim: int) -> Path:
    rng = np.random.default_rng(0)
    index = WinnowIndex.create(dim, embedder=embedder)
    step = 10_000
    for start in range(0, n, step):
        ids = range(start, min(n, start + step))
        records = [DocumentRecord(id=f"doc-{i}", text=f"synthetic document number {i}") for i in ids]
        vectors = rng.standard_normal((len(records), dim)).astype(np.float32)
        index.add_records(records, vectors)
    index.save(folder)
    return folder


@pytest.mark.slow
def test_health_answers_within_100ms_during_a_snapshot_of_100k_documents(
    tmp_path: Path, served_index: Path, make_settings
):
    manifest = read_manifest(served_index)
    index = _large_index(tmp_path / "big", manifest.embedder, 100_000, manifest.dim)
    shutil.rmtree(tmp_path / "index", ignore_errors=True)
    with LiveServer(make_settings(index=index, port=free_port())) as server:
        service = server.app.state.service
        assert service.count()[0] == 100_000
        done = threading.Event()
        failure: list[BaseException] = []

        def snapshot() -> None:
            try:
                service.snapshot(force=True)
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                failure.append(exc)
            finally:
                done.set()

        started = time.perf_counter()
        threading.Thread(target=snapshot, daemon=True).start()
        latencies = asyncio.run(_poll_health(server.url, lambda: not done.is_set(), ("/ready", "/metrics")))
        took = time.perf_counter() - started
    assert not failure, failure
    assert latencies, "the snapshot finished before /health was polled"
    assert max(latencies) < 0.1, f"/health took {max(latencies) * 1000:.0f} ms during a {took:.1f} s snapshot"
