"""WinnowDocumentStore writes its index directory in place: rows and vector changes are appended to the live
table, ``vectors.faiss`` is rewritten only by a compaction, and an acknowledged write survives SIGKILL."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from haystack import Document
from haystack.document_stores.types import DuplicatePolicy

from winnow.indexes import DocumentRecord, WinnowIndex
from winnow.retrieval.document_store import WinnowDocumentStore

DIM = 16
EMBEDDER = "tiny"


def _fingerprint(path: Path) -> tuple[int, int, int]:
    stat = path.stat()
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


@pytest.fixture(scope="module")
def big_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """50,000 documents with random 16-d vectors, built directly (no model)."""
    path = tmp_path_factory.mktemp("big") / "index"
    index = WinnowIndex.create(DIM, embedder=EMBEDDER)
    vectors = np.random.default_rng(0).standard_normal((50_000, DIM)).astype(np.float32)
    records = [DocumentRecord(id=f"d{i}", text=f"document {i}", embedding=vectors[i]) for i in range(50_000)]
    index.add_records(records, vectors)
    index.save(path)
    return path


def test_a_write_to_a_big_index_does_not_rewrite_its_files(big_index: Path, tmp_path: Path) -> None:
    path = tmp_path / "index"
    shutil.copytree(big_index, path)  # copy2 keeps the times the manifest recorded
    store = WinnowDocumentStore(index_path=str(path), embedder=EMBEDDER)
    assert store.count_documents() == 50_000
    vectors, table, manifest = path / "vectors.faiss", path / "documents.sqlite", path / "manifest.json"
    before = {f: _fingerprint(f) for f in (vectors, path / "vectors.state.npz", manifest)}
    table_inode = table.stat().st_ino

    new = Document(id="new", content="a new document", embedding=[1.0] + [0.0] * (DIM - 1))
    assert store.write_documents([new]) == 1
    store.delete_documents(["d7"])
    store.write_documents(
        [Document(id="d8", content="changed", embedding=[0.0, 1.0] + [0.0] * (DIM - 2))],
        DuplicatePolicy.OVERWRITE,
    )

    assert {f: _fingerprint(f) for f in before} == before  # not rewritten, not even touched
    assert table.stat().st_ino == table_inode  # written in place, not replaced
    assert store.index is not None and store.index.pending_changes() == 4  # d8 moved to a new key

    reopened = WinnowDocumentStore(index_path=str(path), embedder=EMBEDDER)
    assert reopened.count_documents() == 50_000
    assert reopened.embedding_retrieval(new.embedding, top_k=1)[0].id == "new"
    assert reopened.embedding_retrieval([0.0, 1.0] + [0.0] * (DIM - 2), top_k=1)[0].content == "changed"
    assert reopened.filter_documents({"field": "id", "operator": "in", "value": ["d7"]}) == []


def test_compact_rewrites_the_snapshot_and_forgets_the_changes(tmp_path: Path) -> None:
    path = tmp_path / "store"
    store = WinnowDocumentStore(index_path=str(path), embedder=EMBEDDER)
    rng = np.random.default_rng(1)
    store.write_documents(
        [Document(id=f"d{i}", content=f"t{i}", embedding=rng.random(4).tolist()) for i in range(9)]
    )
    snapshot = _fingerprint(path / "vectors.faiss")
    store.delete_documents(["d0", "d1"])
    assert _fingerprint(path / "vectors.faiss") == snapshot and store.index.pending_changes() == 2
    store.compact()
    assert _fingerprint(path / "vectors.faiss")[0] != snapshot[0] and store.index.pending_changes() == 0
    reopened = WinnowDocumentStore(index_path=str(path), embedder=EMBEDDER)
    assert reopened.count_documents() == 7 and len(reopened.index) == 7


def test_a_failed_overwrite_on_disk_keeps_the_stored_document(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "store"
    store = WinnowDocumentStore(index_path=str(path), embedder=EMBEDDER)
    store.write_documents([Document(id="a", content="old", embedding=[1.0, 0.0])])
    store.write_documents([Document(id="b", content="other", embedding=[0.5, 0.5])])  # now open in place

    def failing(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(WinnowIndex, "add_records", failing)
    with pytest.raises(OSError, match="disk full"):
        store.write_documents(
            [Document(id="a", content="new", embedding=[0.0, 1.0])], DuplicatePolicy.OVERWRITE
        )
    monkeypatch.undo()
    assert [(d.id, d.content) for d in store.filter_documents()] == [("a", "old"), ("b", "other")]
    assert store.embedding_retrieval([1.0, 0.0], top_k=1)[0].id == "a"
    again = WinnowDocumentStore(index_path=str(path), embedder=EMBEDDER)
    assert [(d.id, d.content) for d in again.filter_documents()] == [("a", "old"), ("b", "other")]


_WRITE_THEN_DIE = textwrap.dedent(
    """
    import os, signal, sys
    from haystack import Document
    from winnow.retrieval.document_store import WinnowDocumentStore

    store = WinnowDocumentStore(index_path=sys.argv[1], embedder="tiny")
    docs = [Document(id=f"acked-{i}", content="x", embedding=[float(i), 1.0]) for i in range(3)]
    store.write_documents(docs)
    store.delete_documents(["base-0"])
    print("acknowledged", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "store"
    store = WinnowDocumentStore(index_path=str(path), embedder=EMBEDDER)
    store.write_documents(
        [Document(id=f"base-{i}", content="b", embedding=[1.0, float(i)]) for i in range(4)]
    )
    del store
    proc = subprocess.run(
        [sys.executable, "-c", _WRITE_THEN_DIE, str(path)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == -9 and "acknowledged" in proc.stdout, proc.stderr[-2000:]
    after = WinnowDocumentStore(index_path=str(path), embedder=EMBEDDER)
    ids = sorted(d.id for d in after.filter_documents())
    assert ids == ["acked-0", "acked-1", "acked-2", "base-1", "base-2", "base-3"]
    assert len(after.index) == 6
    assert after.embedding_retrieval([2.0, 1.0], top_k=1)[0].id == "acked-2"
