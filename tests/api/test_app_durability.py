"""Acknowledged writes survive SIGKILL; concurrent searches never see a half-written document."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from winnow.api.app import create_app
from winnow.indexes import WinnowIndex

from .conftest import free_port


def _start(index: Path, reranker: str, port: int, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "winnow.api.cli", "serve", "--index", str(index), "--reranker", reranker]
    cmd += ["--port", str(port), "--device", "cpu"]
    env = {**os.environ, "WINNOW_SNAPSHOT_INTERVAL_S": "0"}  # no scheduled save: the log alone must do
    proc = subprocess.Popen(cmd, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"winnow serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"winnow serve did not become ready:\n{log.read_text()[-3000:]}")


def test_acknowledged_writes_survive_sigkill(tmp_path, index_copy, tiny_cross_encoder_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    proc = _start(index_copy, tiny_cross_encoder_path, port, log)
    acknowledged: dict[str, str] = {}
    try:
        for batch in range(5):
            docs = [{"id": f"new-{batch}-{i}", "text": f"batch {batch} document {i}"} for i in range(4)]
            r = httpx.put(f"{url}/documents", json={"documents": docs}, timeout=30)
            assert r.status_code == 200, r.text
            acknowledged.update({d["id"]: d["text"] for d in docs})
        assert httpx.delete(f"{url}/documents/fin-2", timeout=30).status_code == 200
        r = httpx.put(
            f"{url}/documents", json={"documents": [{"id": "new-0-0", "text": "replaced"}]}, timeout=30
        )
        assert r.status_code == 200
        acknowledged["new-0-0"] = "replaced"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    assert (index_copy.parent / "index.wal").read_bytes() != b""  # the writes are only in the log

    proc = _start(index_copy, tiny_cross_encoder_path, port, log)
    try:
        for doc_id, text in acknowledged.items():
            r = httpx.get(f"{url}/documents/{doc_id}", timeout=30)
            assert r.status_code == 200 and r.json()["text"] == text, doc_id
        assert httpx.get(f"{url}/documents/fin-2", timeout=30).status_code == 404
        ready = httpx.get(f"{url}/ready", timeout=30).json()
        assert ready["documents"] == 5 - 1 + 20
        hits = httpx.post(
            f"{url}/search", json={"query": "batch 3 document 2", "top_k": 30}, timeout=30
        ).json()
        assert "new-3-2" in {h["id"] for h in hits["results"]}  # searchable, not only stored
    finally:
        proc.send_signal(signal.SIGTERM)  # graceful: saves the index and empties the log
        proc.wait(60)
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status says how the process ended
    assert proc.returncode in (0, -signal.SIGTERM), log.read_text()[-3000:]
    assert (index_copy.parent / "index.wal").read_bytes() == b""
    saved = WinnowIndex.load(index_copy)
    assert saved.table.count() == 24 and saved.table.get(["new-0-0"])[0].text == "replaced"


def test_concurrent_searches_never_see_half_written_documents(make_settings):
    """Writers replace documents whose text and meta carry the same version; readers check they agree."""
    app = create_app(make_settings(reranker="none"))
    errors: list[str] = []
    stop = threading.Event()
    with TestClient(app) as client:

        def writer() -> None:
            for version in range(15):
                docs = [
                    {
                        "id": f"w{i}",
                        "text": f"version {version} " + "alpha " * (3 + version % 4),
                        "meta": {"v": version},
                    }
                    for i in range(6)
                ]
                r = client.put("/documents", json={"documents": docs})
                if r.status_code != 200:
                    errors.append(r.text)
            stop.set()

        def reader() -> None:
            while not stop.is_set():
                r = client.post("/search", json={"query": "alpha version", "top_k": 11})
                if r.status_code != 200:
                    errors.append(r.text)
                    return
                for hit in r.json()["results"]:
                    if hit["id"].startswith("w") and not hit["text"].startswith(
                        f"version {hit['meta']['v']} "
                    ):
                        errors.append(f"half-written: {hit}")

        threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors[:3]
        final = client.post("/search", json={"query": "alpha", "top_k": 11, "rerank": False}).json()[
            "results"
        ]
        assert {h["meta"].get("v") for h in final if h["id"].startswith("w")} == {14}


@pytest.mark.parametrize("interval", [0.2])
def test_scheduled_snapshot_empties_the_log(make_settings, index_copy, interval):
    app = create_app(make_settings(reranker="none", snapshot_interval_s=interval))
    wal = index_copy.parent / "index.wal"
    with TestClient(app) as client:
        client.put("/documents", json={"documents": [{"id": "s1", "text": "snap"}]})
        assert wal.stat().st_size > 0
        deadline = time.monotonic() + 20
        while wal.stat().st_size and time.monotonic() < deadline:
            time.sleep(0.2)
        assert wal.stat().st_size == 0  # saved by the background task, not by shutdown
        assert WinnowIndex.load(index_copy).table.get(["s1"])[0] is not None


def test_missing_index_is_created_by_the_first_write(tmp_path, tiny_bi_encoder_path):
    from winnow.api.settings import load_settings

    index = tmp_path / "fresh-index"
    settings = load_settings(index=index, embedder=tiny_bi_encoder_path, reranker="none", device="cpu")
    with TestClient(create_app(settings)) as client:
        assert client.get("/ready").json()["documents"] == 0
        assert client.post("/search", json={"query": "anything"}).json()["results"] == []
        r = client.put("/documents", json={"documents": [{"id": "first", "text": "hello world"}]})
        assert r.status_code == 200 and r.json()["documents"] == 1
        assert client.post("/search", json={"query": "hello"}).json()["results"][0]["id"] == "first"
    saved = WinnowIndex.load(index)  # saved at shutdown
    assert saved.table.count() == 1 and len(saved) == 1
    assert saved.table.get(["first"])[0].text == "hello world"
